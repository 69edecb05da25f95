package org.proxyreversed.tomcat;

import java.nio.channels.SelectionKey;
import java.nio.channels.SocketChannel;

/** An authenticated link, idle in the watcher until httpd writes a request into it. */
final class Link {
    final SocketChannel ch;
    final int frontEnd;
    final int port;
    final String peer;
    final long acceptedAt;
    final long pingIntervalMs;
    final long pingTimeoutMs;
    final PingParser parser = new PingParser();
    long lastPingAt;
    long pings;
    /** The request bytes read while detecting the request (given back to Tomcat). */
    byte[] prefix;
    SelectionKey key;

    Link(SocketChannel ch, int frontEnd, int port, String peer, long now, long pingIntervalMs, long pingTimeoutMs) {
        this.ch = ch;
        this.frontEnd = frontEnd;
        this.port = port;
        this.peer = peer;
        this.acceptedAt = now;
        this.lastPingAt = now;
        this.pingIntervalMs = pingIntervalMs;
        this.pingTimeoutMs = pingTimeoutMs;
    }

    /** Milliseconds after which, without a PING, the link counts as dead (-1: never). */
    long deadAfter(long slackMs) {
        return pingIntervalMs == 0 ? -1 : pingIntervalMs + pingTimeoutMs + slackMs;
    }
}
