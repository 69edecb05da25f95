package org.proxyreversed.tomcat;

/** Monotonic milliseconds. */
final class Clock {
    private static final long BASE = System.nanoTime();

    private Clock() {
    }

    static long now() {
        return (System.nanoTime() - BASE) / 1_000_000L;
    }
}
