package org.proxyreversed.tomcat;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class PingParserTest {
    @Test
    public void pingsThenRequest() {
        PingParser p = new PingParser();
        for (int i = 0; i < 3; i++) {
            assertEquals(PingParser.Step.MORE, p.feed(0xff));
            assertTrue(p.midFrame());
            assertEquals(PingParser.Step.PING, p.feed(0x01));
            assertFalse(p.midFrame());
        }
        // AJP13's magic 0x12 0x34 and an HTTP method both start a request.
        assertEquals(PingParser.Step.REQUEST, p.feed(0x12));
        assertEquals(PingParser.Step.REQUEST, new PingParser().feed('G'));
        assertArrayEquals(new byte[] {(byte) 0xff, 0x02}, PingParser.PONG);
    }

    @Test
    public void ffFollowedByAnythingElseIsAnError() {
        for (int b : new int[] {0x00, 0x02, 0xff, 0x12, 'G'}) {
            PingParser p = new PingParser();
            assertEquals(PingParser.Step.MORE, p.feed(0xff));
            assertEquals("0xFF then " + b, PingParser.Step.ERROR, p.feed(b));
        }
    }
}
