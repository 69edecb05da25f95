package org.proxyreversed.tomcat;

import java.io.IOException;
import java.net.SocketOption;
import java.net.StandardSocketOptions;
import java.nio.channels.SocketChannel;
import java.util.concurrent.atomic.AtomicBoolean;

import jdk.net.ExtendedSocketOptions;

/**
 * Socket options of every dialled link: TCP_NODELAY, SO_KEEPALIVE with
 * explicit TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT, and TCP_USER_TIMEOUT when
 * the JVM offers it (Java 17 does not: then it is reported once).
 */
final class TcpOptions {
    private static final AtomicBoolean USER_TIMEOUT_REPORTED = new AtomicBoolean();
    private static final AtomicBoolean KEEPALIVE_REPORTED = new AtomicBoolean();

    private TcpOptions() {
    }

    static void apply(SocketChannel ch, ReversedConfig c, Reporter rep) throws IOException {
        ch.setOption(StandardSocketOptions.TCP_NODELAY, Boolean.TRUE);
        if (c.tcpKeepAlive) {
            ch.setOption(StandardSocketOptions.SO_KEEPALIVE, Boolean.TRUE);
            try {
                ch.setOption(ExtendedSocketOptions.TCP_KEEPIDLE, c.tcpKeepIdle);
                ch.setOption(ExtendedSocketOptions.TCP_KEEPINTERVAL, c.tcpKeepInterval);
                ch.setOption(ExtendedSocketOptions.TCP_KEEPCOUNT, c.tcpKeepCount);
            } catch (UnsupportedOperationException | IOException e) {
                if (KEEPALIVE_REPORTED.compareAndSet(false, true)) {
                    rep.warn("TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT cannot be set here (" + e
                            + "); links use the system's keepalive timers");
                }
            }
        }
        if (c.tcpUserTimeout > 0) {
            SocketOption<Integer> ut = userTimeoutOption(ch);
            if (ut != null) {
                ch.setOption(ut, c.tcpUserTimeout);
            } else if (USER_TIMEOUT_REPORTED.compareAndSet(false, true)) {
                rep.info("TCP_USER_TIMEOUT is not available in this JVM (" + System.getProperty("java.version")
                        + "); tcpUserTimeout=" + c.tcpUserTimeout + " is not applied: unacknowledged data fails by the "
                        + "kernel's retransmission limit, idle links by keepalive and httpd's PINGs");
            }
        }
    }

    @SuppressWarnings("unchecked")
    private static SocketOption<Integer> userTimeoutOption(SocketChannel ch) {
        for (SocketOption<?> o : ch.supportedOptions()) {
            if ("TCP_USER_TIMEOUT".equals(o.name()) && o.type() == Integer.class) {
                return (SocketOption<Integer>) o;
            }
        }
        return null;
    }
}
