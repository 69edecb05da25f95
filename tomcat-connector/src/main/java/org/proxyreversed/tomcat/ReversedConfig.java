package org.proxyreversed.tomcat;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The reversed connector's own attributes (as written in server.xml), their
 * defaults, and their validation. Values are kept as written and parsed by
 * {@link #validate}, so that every error names the attribute at fault.
 */
public final class ReversedConfig {
    /** Attribute name -> default (null: required or optional without default). Documented in the README. */
    static final Map<String, String> DEFAULTS = new LinkedHashMap<>();

    static {
        DEFAULTS.put("node", null);
        DEFAULTS.put("secretFile", null);
        DEFAULTS.put("address", null);
        DEFAULTS.put("port", null);
        DEFAULTS.put("ports", "10");
        DEFAULTS.put("frontends", null);
        DEFAULTS.put("idleConnections", "8");
        DEFAULTS.put("maxBackoff", "5000");
        DEFAULTS.put("connectTimeout", "2000");
        DEFAULTS.put("handshakeTimeout", "2000");
        DEFAULTS.put("dialerThreads", "8");
        DEFAULTS.put("maxDialsInFlight", "64");
        DEFAULTS.put("tcpKeepAlive", "true");
        DEFAULTS.put("tcpKeepIdle", "60");
        DEFAULTS.put("tcpKeepInterval", "10");
        DEFAULTS.put("tcpKeepCount", "3");
        DEFAULTS.put("tcpUserTimeout", "30000");
        DEFAULTS.put("pingSlack", "0");
        DEFAULTS.put("reverseConnection", "true");
    }

    private final Map<String, String> raw = new LinkedHashMap<>();
    private final List<String> unknown = new ArrayList<>();
    private final List<String> refused = new ArrayList<>();

    // Parsed values (valid after validate()).
    String node;
    String secretFile;
    int ports;
    int idleConnections;
    long maxBackoff;
    long connectTimeout;
    long handshakeTimeout;
    int dialerThreads;
    int maxDialsInFlight;
    boolean tcpKeepAlive;
    int tcpKeepIdle;
    int tcpKeepInterval;
    int tcpKeepCount;
    int tcpUserTimeout;
    long pingSlack;
    private List<FrontEnd> frontEnds = Collections.emptyList();

    public void set(String name, String value) {
        raw.put(name, value);
    }

    public String get(String name) {
        String v = raw.get(name);
        return v != null ? v : DEFAULTS.get(name);
    }

    /** An attribute nobody accepted (a misspelling): reported by validate(). */
    public void unknown(String name) {
        if (!unknown.contains(name)) {
            unknown.add(name);
        }
    }

    /** A known Tomcat attribute whose value Tomcat could not take (e.g. maxThreads="many"). */
    public void refused(String name, String value) {
        String lower = name.toLowerCase(Locale.ROOT);
        String shown = lower.contains("secret") || lower.contains("password") ? "..." : value;
        String e = "attribute \"" + name + "\"=\"" + shown + "\" was not accepted by Tomcat (bad value)";
        if (!refused.contains(e)) {
            refused.add(e);
        }
    }

    public List<FrontEnd> frontEnds() {
        return frontEnds;
    }

    /**
     * Checks everything; throws IllegalArgumentException naming every
     * attribute at fault. {@code port} is Tomcat's port attribute (-1 or 0
     * when not set), {@code host} the connector's address attribute as written
     * (null when not set).
     */
    public void validate(String host, int port) {
        List<String> errs = new ArrayList<>(refused);
        for (String u : unknown) {
            String hint = suggest(u);
            errs.add("unknown attribute \"" + u + "\"" + (hint == null ? "" : " (did you mean \"" + hint + "\"?)"));
        }
        node = get("node");
        if (node == null || node.trim().isEmpty()) {
            errs.add("attribute \"node\" is required: the node name of httpd's ProxyReversed line");
        } else if (!Handshake.validNode(node.trim())) {
            errs.add("attribute \"node\"=\"" + node + "\" is invalid: 1-64 characters of A-Z a-z 0-9 . _ -");
        } else {
            node = node.trim();
        }
        secretFile = get("secretFile");
        if (secretFile == null || secretFile.trim().isEmpty()) {
            errs.add("attribute \"secretFile\" is required: the file holding the node's shared secret");
        }
        ports = intAttr("ports", 1, 65535, errs);
        idleConnections = intAttr("idleConnections", 1, 100_000, errs);
        maxBackoff = intAttr("maxBackoff", 50, 3_600_000, errs);
        connectTimeout = intAttr("connectTimeout", 1, 600_000, errs);
        handshakeTimeout = intAttr("handshakeTimeout", 1, 600_000, errs);
        dialerThreads = intAttr("dialerThreads", 1, 256, errs);
        maxDialsInFlight = intAttr("maxDialsInFlight", 1, 10_000, errs);
        tcpKeepAlive = boolAttr("tcpKeepAlive", errs);
        tcpKeepIdle = intAttr("tcpKeepIdle", 1, 32767, errs);
        tcpKeepInterval = intAttr("tcpKeepInterval", 1, 32767, errs);
        tcpKeepCount = intAttr("tcpKeepCount", 1, 127, errs);
        tcpUserTimeout = intAttr("tcpUserTimeout", 0, Integer.MAX_VALUE, errs);
        pingSlack = intAttr("pingSlack", 0, 3_600_000, errs);
        if (!boolAttr("reverseConnection", errs)) {
            errs.add("attribute \"reverseConnection\" can only be true on a reversed connector");
        }
        List<FrontEnd> fes = new ArrayList<>();
        if (port > 0) {
            if (host == null || host.trim().isEmpty()) {
                errs.add("attribute \"address\" is required with \"port\": httpd's listen address for the node");
            } else if (ports > 0 && (long) port + ports - 1 > 65535) {
                errs.add("attributes \"port\"=" + port + " and \"ports\"=" + ports + " go beyond port 65535");
            } else if (ports > 0) {
                fes.add(new FrontEnd(host.trim(), port, port + ports - 1));
            }
        }
        String list = get("frontends");
        if (list != null) {
            try {
                for (FrontEnd f : FrontEnd.parseList(list)) {
                    if (fes.contains(f)) {
                        errs.add("attribute \"frontends\": " + f + " is listed twice");
                    } else {
                        fes.add(f);
                    }
                }
            } catch (IllegalArgumentException e) {
                errs.add("attribute \"frontends\": " + e.getMessage());
            }
        }
        if (fes.isEmpty() && port <= 0 && (list == null || list.trim().isEmpty())) {
            errs.add("no front end: set \"address\" and \"port\" (httpd's listen address and the first port of the"
                    + " node's range, with \"ports\" ports) or \"frontends\" (HOST:FIRST-LAST, ...)");
        }
        if (!errs.isEmpty()) {
            throw new IllegalArgumentException("mod_proxy_reversed connector" + (node == null ? "" : " (node " + node + ")")
                    + ": " + String.join("; ", errs));
        }
        frontEnds = fes;
    }

    private int intAttr(String name, int min, int max, List<String> errs) {
        String v = get(name);
        try {
            long x = Long.parseLong(v.trim());
            if (x < min || x > max) {
                errs.add("attribute \"" + name + "\"=\"" + v + "\" is out of range (" + min + "-" + max + ")");
                return min;
            }
            return (int) x;
        } catch (NumberFormatException | NullPointerException e) {
            errs.add("attribute \"" + name + "\"=\"" + v + "\" is not a whole number");
            return min;
        }
    }

    private boolean boolAttr(String name, List<String> errs) {
        String v = get(name).trim().toLowerCase(Locale.ROOT);
        if (v.equals("true")) {
            return true;
        }
        if (v.equals("false")) {
            return false;
        }
        errs.add("attribute \"" + name + "\"=\"" + get(name) + "\" is neither true nor false");
        return false;
    }

    /** The closest known attribute name, if close enough to be a misspelling. */
    static String suggest(String u) {
        String best = null;
        int bestD = Integer.MAX_VALUE;
        for (String k : DEFAULTS.keySet()) {
            int d = distance(u.toLowerCase(Locale.ROOT), k.toLowerCase(Locale.ROOT));
            if (d < bestD) {
                bestD = d;
                best = k;
            }
        }
        return bestD <= Math.max(2, u.length() / 4) ? best : null;
    }

    private static int distance(String a, String b) {
        int[] prev = new int[b.length() + 1];
        int[] cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) {
            prev[j] = j;
        }
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++) {
                int c = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + c);
            }
            int[] t = prev;
            prev = cur;
            cur = t;
        }
        return prev[b.length()];
    }
}
