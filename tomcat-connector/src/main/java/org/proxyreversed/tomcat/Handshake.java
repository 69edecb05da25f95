package org.proxyreversed.tomcat;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The dialer's side of the mod_proxy_reversed handshake, version 2
 * (handshake-v2-spec: HELLO, CHALLENGE with the ping settings, PROOF,
 * VERDICT). Codec functions are static and pure, so that tests can check them
 * against the shared vectors; {@link #dial} runs the exchange on a connected
 * blocking socket.
 */
public final class Handshake {
    public static final byte[] MAGIC = {'R', 'V', 'R', 'S'};
    public static final int VERSION = 2;
    public static final int NONCE_LEN = 32;
    public static final int PROOF_LEN = 32;
    public static final int MAX_NODE_LEN = 64;
    /** CHALLENGE with status 0: magic, version, status, nonce, two u32, proof. */
    public static final int CHALLENGE_OK_LEN = 4 + 1 + 1 + NONCE_LEN + 4 + 4 + PROOF_LEN;
    private static final byte[] LABEL_HTTPD = "RVRS2 httpd".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] LABEL_AGENT = "RVRS2 agent".getBytes(StandardCharsets.US_ASCII);

    /** Why a dial did not produce an idle link. */
    public enum Kind {
        /** Refused connect, timeout, I/O or protocol trouble: back off this port. */
        NET,
        /** Wrong secret, wrong node, impostor, version mismatch: report, back off long. */
        AUTH,
        /** Pool full or shutting down: try other ports. */
        BUSY
    }

    public static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;
        public final Kind kind;

        public Failure(Kind kind, String message) {
            super(message);
            this.kind = kind;
        }
    }

    /** The ping settings httpd announced for an accepted link. */
    public static final class Accepted {
        public final long pingIntervalMs;
        public final long pingTimeoutMs;

        public Accepted(long pingIntervalMs, long pingTimeoutMs) {
            this.pingIntervalMs = pingIntervalMs;
            this.pingTimeoutMs = pingTimeoutMs;
        }
    }

    /** A parsed CHALLENGE that continues the handshake. */
    public static final class Challenge {
        public final byte[] serverNonce;
        public final long pingIntervalMs;
        public final long pingTimeoutMs;
        public final byte[] serverProof;

        Challenge(byte[] serverNonce, long pingIntervalMs, long pingTimeoutMs, byte[] serverProof) {
            this.serverNonce = serverNonce;
            this.pingIntervalMs = pingIntervalMs;
            this.pingTimeoutMs = pingTimeoutMs;
            this.serverProof = serverProof;
        }
    }

    private Handshake() {
    }

    public static boolean validNode(String node) {
        if (node == null || node.isEmpty() || node.length() > MAX_NODE_LEN) {
            return false;
        }
        for (int i = 0; i < node.length(); i++) {
            char c = node.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '.' || c == '_' || c == '-';
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    public static byte[] hello(byte[] node, byte[] clientNonce) {
        byte[] v = new byte[4 + 1 + 1 + node.length + NONCE_LEN];
        System.arraycopy(MAGIC, 0, v, 0, 4);
        v[4] = (byte) VERSION;
        v[5] = (byte) node.length;
        System.arraycopy(node, 0, v, 6, node.length);
        System.arraycopy(clientNonce, 0, v, 6 + node.length, NONCE_LEN);
        return v;
    }

    /** P = node_len || node || client_nonce || server_nonce || ping_interval_ms[4] || ping_timeout_ms[4]. */
    public static byte[] transcript(byte[] node, byte[] cn, byte[] sn, long pingIntervalMs, long pingTimeoutMs) {
        byte[] p = new byte[1 + node.length + NONCE_LEN + NONCE_LEN + 8];
        int i = 0;
        p[i++] = (byte) node.length;
        System.arraycopy(node, 0, p, i, node.length);
        i += node.length;
        System.arraycopy(cn, 0, p, i, NONCE_LEN);
        i += NONCE_LEN;
        System.arraycopy(sn, 0, p, i, NONCE_LEN);
        i += NONCE_LEN;
        putU32(p, i, pingIntervalMs);
        putU32(p, i + 4, pingTimeoutMs);
        return p;
    }

    public static byte[] serverProof(SecretKeySpec key, byte[] p) {
        return hmac(key, LABEL_HTTPD, p);
    }

    public static byte[] clientProof(SecretKeySpec key, byte[] p) {
        return hmac(key, LABEL_AGENT, p);
    }

    public static SecretKeySpec key(byte[] secret) {
        return new SecretKeySpec(secret, "HmacSHA256");
    }

    private static byte[] hmac(SecretKeySpec key, byte[] label, byte[] p) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(key);
            mac.update(label);
            mac.update(p);
            return mac.doFinal();
        } catch (GeneralSecurityException e) {
            // HmacSHA256 is mandatory in every Java SE implementation.
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
    }

    /**
     * Parses the 6-byte CHALLENGE header: returns normally for status 0 of
     * version 2, throws the classified failure for every other answer.
     */
    public static void checkChallengeHeader(byte[] h, String addr, String node) throws Failure {
        for (int i = 0; i < 4; i++) {
            if (h[i] != MAGIC[i]) {
                throw new Failure(Kind.NET, "httpd at " + addr + " answered bytes that are no handshake (not a mod_proxy_reversed port?)");
            }
        }
        int version = h[4] & 0xff;
        int status = h[5] & 0xff;
        if (version == 1) {
            if (status == 2) {
                throw new Failure(Kind.AUTH, "httpd at " + addr + " speaks only handshake version 1 (node " + node
                        + "); this connector speaks version 2: upgrade mod_proxy_reversed");
            }
            if (status == 5) {
                throw new Failure(Kind.AUTH, "httpd at " + addr + " refused handshake version 2 for node " + node);
            }
            throw new Failure(Kind.NET, "httpd at " + addr + " answered with handshake version 1, status " + status);
        }
        if (version != VERSION) {
            throw new Failure(Kind.NET, "httpd at " + addr + " answered with unknown handshake version " + version);
        }
        switch (status) {
            case 0:
                return;
            case 1:
                throw new Failure(Kind.AUTH, "httpd at " + addr + " refused node " + node
                        + ": this port belongs to another node (wrong node or port range)");
            case 2:
                throw new Failure(Kind.AUTH, "httpd at " + addr + " refused the hello of node " + node + " as malformed");
            case 4:
                throw new Failure(Kind.BUSY, "refused: the httpd child is shutting down");
            default:
                throw new Failure(Kind.NET, "httpd at " + addr + " answered unknown refusal code " + status);
        }
    }

    /** Parses the rest of a status-0 CHALLENGE (after the 6-byte header). */
    public static Challenge parseChallengeBody(byte[] b) {
        byte[] sn = new byte[NONCE_LEN];
        byte[] sp = new byte[PROOF_LEN];
        System.arraycopy(b, 0, sn, 0, NONCE_LEN);
        long interval = getU32(b, NONCE_LEN);
        long timeout = getU32(b, NONCE_LEN + 4);
        System.arraycopy(b, NONCE_LEN + 8, sp, 0, PROOF_LEN);
        return new Challenge(sn, interval, timeout, sp);
    }

    /** Throws the classified failure for a non-zero VERDICT. */
    public static void checkVerdict(int v, String addr, String node) throws Failure {
        switch (v) {
            case 0:
                return;
            case 1:
                throw new Failure(Kind.AUTH, "httpd at " + addr + " rejected the proof of node " + node + ": wrong secret");
            case 3:
                throw new Failure(Kind.BUSY, "refused: the httpd child's idle pool is full");
            case 4:
                throw new Failure(Kind.BUSY, "refused: the httpd child is shutting down");
            case 5:
                throw new Failure(Kind.NET, "httpd at " + addr + " rejected the handshake: bytes after the proof");
            default:
                throw new Failure(Kind.NET, "httpd at " + addr + " answered unknown verdict " + v);
        }
    }

    /**
     * Runs the handshake on a connected socket in blocking mode (reads through
     * the socket's stream honour SO_TIMEOUT, bounded by {@code timeoutMs} in
     * all). Reads exactly the handshake's bytes: anything httpd sends after
     * the VERDICT (PINGs) stays in the kernel.
     */
    public static Accepted dial(Socket s, String node, SecretKeySpec key, SecureRandom rnd, long timeoutMs,
            String addr) throws Failure, IOException {
        long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
        byte[] nodeBytes = node.getBytes(StandardCharsets.US_ASCII);
        byte[] cn = new byte[NONCE_LEN];
        rnd.nextBytes(cn);
        InputStream in = s.getInputStream();
        OutputStream out = s.getOutputStream();
        out.write(hello(nodeBytes, cn));
        out.flush();
        byte[] head = readFully(s, in, 6, deadline, addr, "challenge");
        checkChallengeHeader(head, addr, node);
        Challenge c = parseChallengeBody(readFully(s, in, CHALLENGE_OK_LEN - 6, deadline, addr, "challenge"));
        byte[] p = transcript(nodeBytes, cn, c.serverNonce, c.pingIntervalMs, c.pingTimeoutMs);
        // The dialer checks httpd's proof before giving its own (an impostor gets nothing).
        if (!MessageDigest.isEqual(serverProof(key, p), c.serverProof)) {
            throw new Failure(Kind.AUTH, "httpd at " + addr + " failed to prove the secret for node " + node
                    + " (wrong secret or impostor)");
        }
        out.write(clientProof(key, p));
        out.flush();
        byte[] v = readFully(s, in, 1, deadline, addr, "verdict");
        checkVerdict(v[0] & 0xff, addr, node);
        return new Accepted(c.pingIntervalMs, c.pingTimeoutMs);
    }

    private static byte[] readFully(Socket s, InputStream in, int n, long deadline, String addr, String what)
            throws IOException, Failure {
        byte[] b = new byte[n];
        int got = 0;
        while (got < n) {
            long left = (deadline - System.nanoTime()) / 1_000_000L;
            if (left <= 0) {
                throw new Failure(Kind.NET, "handshake with " + addr + " timed out waiting for the " + what);
            }
            s.setSoTimeout((int) Math.min(left, Integer.MAX_VALUE));
            int r;
            try {
                r = in.read(b, got, n - got);
            } catch (SocketTimeoutException e) {
                throw new Failure(Kind.NET, "handshake with " + addr + " timed out waiting for the " + what);
            }
            if (r < 0) {
                if (got == 0 && "verdict".equals(what)) {
                    throw new Failure(Kind.NET, "httpd at " + addr + " closed the connection before the verdict");
                }
                throw new EOFException("httpd at " + addr + " closed the connection during the " + what);
            }
            got += r;
        }
        return b;
    }

    static void putU32(byte[] b, int i, long v) {
        b[i] = (byte) (v >>> 24);
        b[i + 1] = (byte) (v >>> 16);
        b[i + 2] = (byte) (v >>> 8);
        b[i + 3] = (byte) v;
    }

    static long getU32(byte[] b, int i) {
        return ((long) (b[i] & 0xff) << 24) | ((b[i + 1] & 0xff) << 16) | ((b[i + 2] & 0xff) << 8) | (b[i + 3] & 0xff);
    }
}
