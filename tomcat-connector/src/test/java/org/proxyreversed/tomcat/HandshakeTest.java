package org.proxyreversed.tomcat;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.junit.Test;

public class HandshakeTest {

    static byte[] hex(String s) {
        s = s.trim();
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) {
            b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return b;
    }

    static String hexOf(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    /** The HMAC primitive the connector relies on, against the v1 vector verified with Python's hmac. */
    @Test
    public void hmacPrimitiveMatchesKnownVector() throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec("0123456789abcdef".getBytes(StandardCharsets.US_ASCII), "HmacSHA256"));
        ByteArrayOutputStream m = new ByteArrayOutputStream();
        m.write("RVRS1 httpd".getBytes(StandardCharsets.US_ASCII));
        m.write(4);
        m.write("app1".getBytes(StandardCharsets.US_ASCII));
        m.write(new byte[64]);
        assertEquals("41f2ccc1672528ac93f876ca030a44569ce2f6800e56926908da825b5423e2a6", hexOf(mac.doFinal(m.toByteArray())));
    }

    /** v2 framing and proofs, expectations built by hand from the spec's text. */
    @Test
    public void v2FramesAndProofsFollowTheSpec() throws Exception {
        byte[] secret = "a secret of the node app1".getBytes(StandardCharsets.US_ASCII);
        byte[] node = "app1".getBytes(StandardCharsets.US_ASCII);
        byte[] cn = new byte[32];
        byte[] sn = new byte[32];
        for (int i = 0; i < 32; i++) {
            cn[i] = (byte) i;
            sn[i] = (byte) (0xff - i);
        }
        byte[] hello = Handshake.hello(node, cn);
        ByteArrayOutputStream want = new ByteArrayOutputStream();
        want.write(new byte[] {'R', 'V', 'R', 'S', 0x02, 4});
        want.write(node);
        want.write(cn);
        assertArrayEquals(want.toByteArray(), hello);

        // P with ping_interval 30000 = 0x00007530 and ping_timeout 2000 = 0x000007d0, big-endian.
        ByteArrayOutputStream p = new ByteArrayOutputStream();
        p.write(4);
        p.write(node);
        p.write(cn);
        p.write(sn);
        p.write(new byte[] {0x00, 0x00, 0x75, 0x30, 0x00, 0x00, 0x07, (byte) 0xd0});
        assertArrayEquals(p.toByteArray(), Handshake.transcript(node, cn, sn, 30000, 2000));

        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(secret, "HmacSHA256"));
        mac.update("RVRS2 httpd".getBytes(StandardCharsets.US_ASCII));
        byte[] sp = mac.doFinal(p.toByteArray());
        mac.update("RVRS2 agent".getBytes(StandardCharsets.US_ASCII));
        byte[] cp = mac.doFinal(p.toByteArray());
        SecretKeySpec key = Handshake.key(secret);
        assertArrayEquals(sp, Handshake.serverProof(key, p.toByteArray()));
        assertArrayEquals(cp, Handshake.clientProof(key, p.toByteArray()));
        assertFalse("the two labels differ (no reflection)", hexOf(sp).equals(hexOf(cp)));
        // The ping fields are covered by the proofs.
        assertFalse(hexOf(sp).equals(hexOf(Handshake.serverProof(key, Handshake.transcript(node, cn, sn, 0, 2000)))));

        byte[] body = new byte[32 + 8 + 32];
        System.arraycopy(sn, 0, body, 0, 32);
        System.arraycopy(new byte[] {0x00, 0x00, 0x75, 0x30, 0x00, 0x00, 0x07, (byte) 0xd0}, 0, body, 32, 8);
        System.arraycopy(sp, 0, body, 40, 32);
        Handshake.Challenge c = Handshake.parseChallengeBody(body);
        assertArrayEquals(sn, c.serverNonce);
        assertEquals(30000, c.pingIntervalMs);
        assertEquals(2000, c.pingTimeoutMs);
        assertArrayEquals(sp, c.serverProof);
        // u32 above 2^31 stays unsigned
        body[32] = (byte) 0xff;
        assertEquals(0xff007530L, Handshake.parseChallengeBody(body).pingIntervalMs);
    }

    private static Handshake.Kind headerKind(int version, int status) {
        try {
            Handshake.checkChallengeHeader(new byte[] {'R', 'V', 'R', 'S', (byte) version, (byte) status}, "h:1", "app1");
            return null;
        } catch (Handshake.Failure f) {
            return f.kind;
        }
    }

    @Test
    public void refusalsAreClassified() {
        assertEquals(null, headerKind(2, 0));
        assertEquals(Handshake.Kind.AUTH, headerKind(2, 1));
        assertEquals(Handshake.Kind.AUTH, headerKind(2, 2));
        assertEquals(Handshake.Kind.BUSY, headerKind(2, 4));
        assertEquals(Handshake.Kind.NET, headerKind(2, 9));
        // An old httpd: "RVRS" 0x01 0x02 -> reported as version 1 only, not retried blindly.
        assertEquals(Handshake.Kind.AUTH, headerKind(1, 2));
        assertEquals(Handshake.Kind.AUTH, headerKind(1, 5));
        assertEquals(Handshake.Kind.NET, headerKind(3, 0));
        try {
            Handshake.checkChallengeHeader(new byte[] {'R', 'V', 'R', 'S', 1, 2}, "h:1", "app1");
            fail();
        } catch (Handshake.Failure f) {
            assertTrue(f.getMessage(), f.getMessage().contains("only handshake version 1"));
        }
        try {
            Handshake.checkChallengeHeader("HTTP/1".getBytes(StandardCharsets.US_ASCII), "h:1", "app1");
            fail();
        } catch (Handshake.Failure f) {
            assertEquals(Handshake.Kind.NET, f.kind);
        }
    }

    private static Handshake.Kind verdictKind(int v) {
        try {
            Handshake.checkVerdict(v, "h:1", "app1");
            return null;
        } catch (Handshake.Failure f) {
            return f.kind;
        }
    }

    @Test
    public void verdictsAreClassified() {
        assertEquals(null, verdictKind(0));
        assertEquals(Handshake.Kind.AUTH, verdictKind(1));
        assertEquals(Handshake.Kind.BUSY, verdictKind(3));
        assertEquals(Handshake.Kind.BUSY, verdictKind(4));
        assertEquals(Handshake.Kind.NET, verdictKind(5));
        assertEquals(Handshake.Kind.NET, verdictKind(200));
    }

    @Test
    public void nodeNames() {
        assertTrue(Handshake.validNode("app-1.example_x"));
        assertFalse(Handshake.validNode(""));
        assertFalse(Handshake.validNode("a b"));
        assertFalse(Handshake.validNode("x".repeat(65)));
        assertTrue(Handshake.validNode("x".repeat(64)));
    }

    /** The vectors shared with the Rust side (proto/testdata/handshake-v2.vectors). */
    static List<Map<String, String>> readVectors(Path p) throws Exception {
        List<Map<String, String>> cases = new ArrayList<>();
        Map<String, String> cur = new LinkedHashMap<>();
        for (String line : Files.readAllLines(p, StandardCharsets.UTF_8)) {
            String l = line.trim();
            if (l.startsWith("#")) {
                continue;
            }
            if (l.isEmpty()) {
                if (!cur.isEmpty()) {
                    cases.add(cur);
                    cur = new LinkedHashMap<>();
                }
                continue;
            }
            int eq = l.indexOf('=');
            assertTrue("malformed vector line: " + l, eq > 0);
            cur.put(l.substring(0, eq).trim(), l.substring(eq + 1).trim());
        }
        if (!cur.isEmpty()) {
            cases.add(cur);
        }
        return cases;
    }

    static Path vectorsFile() {
        Path p = Paths.get(System.getProperty("vectors", "proto/testdata/handshake-v2.vectors"));
        return p;
    }

    @Test
    public void sharedVectors() throws Exception {
        Path p = vectorsFile();
        assertTrue("missing " + p.toAbsolutePath() + " (run from the repository root)", Files.exists(p));
        List<Map<String, String>> cases = readVectors(p);
        int v2 = 0;
        for (Map<String, String> c : cases) {
            if (!"2".equals(c.getOrDefault("version", "2"))) {
                // A version-1 challenge is never taken for a v2 one.
                try {
                    Handshake.checkChallengeHeader(hex(c.get("challenge")), "vector", c.get("node"));
                    fail("accepted a version-" + c.get("version") + " challenge");
                } catch (Handshake.Failure expected) {
                    assertTrue(expected.getMessage(), expected.getMessage().contains("version 1"));
                }
                continue;
            }
            v2++;
            byte[] secret = hex(c.get("secret"));
            byte[] node = c.get("node").getBytes(StandardCharsets.US_ASCII);
            byte[] cn = hex(c.get("client_nonce"));
            byte[] sn = hex(c.get("server_nonce"));
            long iv = Long.parseLong(c.get("ping_interval_ms"));
            long to = Long.parseLong(c.get("ping_timeout_ms"));
            String what = "vector for node " + c.get("node") + " interval " + iv;
            assertEquals(what + ": hello", c.get("hello"), hexOf(Handshake.hello(node, cn)));
            byte[] tr = Handshake.transcript(node, cn, sn, iv, to);
            SecretKeySpec key = Handshake.key(secret);
            assertEquals(what + ": server_proof", c.get("server_proof"), hexOf(Handshake.serverProof(key, tr)));
            assertEquals(what + ": client_proof", c.get("client_proof"), hexOf(Handshake.clientProof(key, tr)));
            byte[] ch = hex(c.get("challenge"));
            assertEquals(what + ": challenge length", Handshake.CHALLENGE_OK_LEN, ch.length);
            Handshake.checkChallengeHeader(ch, "vector", c.get("node"));
            byte[] body = new byte[ch.length - 6];
            System.arraycopy(ch, 6, body, 0, body.length);
            Handshake.Challenge parsed = Handshake.parseChallengeBody(body);
            assertEquals(what, hexOf(sn), hexOf(parsed.serverNonce));
            assertEquals(what, iv, parsed.pingIntervalMs);
            assertEquals(what, to, parsed.pingTimeoutMs);
            assertEquals(what, c.get("server_proof"), hexOf(parsed.serverProof));
        }
        assertTrue("version-2 cases in " + p + ": " + v2, v2 >= 3);
    }
}
