package org.proxyreversed.tomcat;

/**
 * The idle phase of a link (handshake v2): httpd sends PING (0xFF 0x01), the
 * dialer answers PONG (0xFF 0x02); the first byte that is not 0xFF starts the
 * request. Fed one byte at a time, so that no request byte is ever read
 * beyond the first one.
 */
public final class PingParser {
    public static final byte[] PONG = {(byte) 0xff, 0x02};

    public enum Step {
        /** Byte consumed, nothing to do yet (the first half of a PING). */
        MORE,
        /** A complete PING: answer with a PONG. */
        PING,
        /** The byte starts a request: hand the link over, keeping that byte. */
        REQUEST,
        /** 0xFF followed by something other than 0x01: close the link. */
        ERROR
    }

    private boolean sawFF;

    public Step feed(int b) {
        b &= 0xff;
        if (sawFF) {
            sawFF = false;
            return b == 0x01 ? Step.PING : Step.ERROR;
        }
        if (b == 0xff) {
            sawFF = true;
            return Step.MORE;
        }
        return Step.REQUEST;
    }

    /** Whether the parser sits between the two bytes of a PING. */
    public boolean midFrame() {
        return sawFF;
    }
}
