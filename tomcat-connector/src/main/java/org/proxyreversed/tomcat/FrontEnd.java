package org.proxyreversed.tomcat;

import java.util.ArrayList;
import java.util.List;

/** An httpd front end: a host and the port range its node listens on. */
public final class FrontEnd {
    public final String host;
    public final int first;
    public final int last;

    public FrontEnd(String host, int first, int last) {
        if (host == null || host.isEmpty()) {
            throw new IllegalArgumentException("empty host");
        }
        if (first < 1 || last > 65535 || first > last) {
            throw new IllegalArgumentException("bad port range " + first + "-" + last);
        }
        this.host = host;
        this.first = first;
        this.last = last;
    }

    public int ports() {
        return last - first + 1;
    }

    /**
     * Parses {@code HOST:FIRST-LAST} or {@code HOST:PORT}; an IPv6 host is
     * written in brackets ({@code [::1]:9000-9009}).
     */
    public static FrontEnd parse(String s) {
        String t = s == null ? "" : s.trim();
        int colon = t.lastIndexOf(':');
        if (colon <= 0) {
            throw new IllegalArgumentException(bad(s, "no port"));
        }
        String host = t.substring(0, colon);
        String ports = t.substring(colon + 1);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        } else if (host.indexOf(':') >= 0) {
            throw new IllegalArgumentException(bad(s, "an IPv6 address needs brackets"));
        }
        if (host.isEmpty() || host.matches(".*[\\[\\]\\s/,].*")) {
            throw new IllegalArgumentException(bad(s, "bad host"));
        }
        int dash = ports.indexOf('-');
        int first;
        int last;
        if (dash >= 0) {
            first = port(s, ports.substring(0, dash));
            last = port(s, ports.substring(dash + 1));
        } else {
            first = port(s, ports);
            last = first;
        }
        if (first > last) {
            throw new IllegalArgumentException(bad(s, "the first port is above the last"));
        }
        return new FrontEnd(host, first, last);
    }

    /** A list of front ends separated by commas or white space. */
    public static List<FrontEnd> parseList(String s) {
        List<FrontEnd> out = new ArrayList<>();
        if (s == null) {
            return out;
        }
        for (String part : s.trim().split("[,\\s]+")) {
            if (!part.isEmpty()) {
                out.add(parse(part));
            }
        }
        return out;
    }

    private static int port(String whole, String p) {
        try {
            int v = Integer.parseInt(p.trim());
            if (v < 1 || v > 65535) {
                throw new NumberFormatException();
            }
            return v;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(bad(whole, "bad port \"" + p + "\""));
        }
    }

    private static String bad(String s, String why) {
        return "invalid front end \"" + s + "\": " + why + " (expected HOST:FIRST-LAST or HOST:PORT)";
    }

    public String addr(int port) {
        return (host.indexOf(':') >= 0 ? "[" + host + "]" : host) + ":" + port;
    }

    /** host_first-last, for names (JMX, threads). */
    public String idPart() {
        return host.replace(':', '.') + "_" + first + "-" + last;
    }

    @Override
    public String toString() {
        String h = host.indexOf(':') >= 0 ? "[" + host + "]" : host;
        return first == last ? h + ":" + first : h + ":" + first + "-" + last;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof FrontEnd)) {
            return false;
        }
        FrontEnd f = (FrontEnd) o;
        return host.equalsIgnoreCase(f.host) && first == f.first && last == f.last;
    }

    @Override
    public int hashCode() {
        return host.toLowerCase(java.util.Locale.ROOT).hashCode() * 31 + first * 7 + last;
    }
}
