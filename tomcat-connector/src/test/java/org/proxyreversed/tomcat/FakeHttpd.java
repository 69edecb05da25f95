package org.proxyreversed.tomcat;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import javax.crypto.spec.SecretKeySpec;

/**
 * httpd's side of handshake v2 on one loopback port, for the Java tests:
 * accepts dialers, verifies them, and queues accepted links for the test to
 * drive (PINGs, requests). Written from the spec, independently of the
 * connector's dialer code except for the HMAC primitive.
 */
final class FakeHttpd implements AutoCloseable {
    final ServerSocket ss;
    final String node;
    final SecretKeySpec key;
    volatile long pingInterval = 30_000;
    volatile long pingTimeout = 2_000;
    /** Non-zero: the VERDICT sent instead of checking the proof (3 pool full, 4 shutting down). */
    volatile int forcedVerdict;
    /** Answer every HELLO like a version-1-only httpd. */
    volatile boolean v1Only;
    final AtomicInteger hellos = new AtomicInteger();
    final AtomicInteger accepted = new AtomicInteger();
    final AtomicInteger wrongProof = new AtomicInteger();
    final LinkedBlockingQueue<Socket> links = new LinkedBlockingQueue<>();
    private final List<Socket> all = new ArrayList<>();
    private final Thread thread;
    private final SecureRandom rnd = new SecureRandom();

    FakeHttpd(String node, byte[] secret) throws IOException {
        this(node, secret, 0);
    }

    FakeHttpd(String node, byte[] secret, int port) throws IOException {
        this.ss = new ServerSocket(port, 200, InetAddress.getLoopbackAddress());
        this.node = node;
        this.key = Handshake.key(secret);
        this.thread = new Thread(this::loop, "fake-httpd-" + ss.getLocalPort());
        this.thread.setDaemon(true);
        this.thread.start();
    }

    int port() {
        return ss.getLocalPort();
    }

    Socket takeLink(long ms) throws InterruptedException {
        return links.poll(ms, TimeUnit.MILLISECONDS);
    }

    private void loop() {
        while (!ss.isClosed()) {
            Socket s;
            try {
                s = ss.accept();
            } catch (IOException e) {
                return;
            }
            synchronized (all) {
                all.add(s);
            }
            try {
                s.setSoTimeout(3000);
                if (serve(s)) {
                    s.setSoTimeout(0);
                    links.add(s);
                } else {
                    s.close();
                }
            } catch (IOException e) {
                try {
                    s.close();
                } catch (IOException ignored) {
                    // test helper
                }
            }
        }
    }

    private boolean serve(Socket s) throws IOException {
        DataInputStream in = new DataInputStream(s.getInputStream());
        OutputStream out = s.getOutputStream();
        byte[] head = new byte[6];
        in.readFully(head);
        hellos.incrementAndGet();
        if (v1Only) {
            out.write(new byte[] {'R', 'V', 'R', 'S', 1, 2});
            return false;
        }
        if (head[0] != 'R' || head[1] != 'V' || head[2] != 'R' || head[3] != 'S' || head[4] != 2) {
            out.write(new byte[] {'R', 'V', 'R', 'S', 2, 2});
            return false;
        }
        byte[] nodeBytes = new byte[head[5] & 0xff];
        in.readFully(nodeBytes);
        byte[] cn = new byte[32];
        in.readFully(cn);
        if (!node.equals(new String(nodeBytes, StandardCharsets.US_ASCII))) {
            out.write(new byte[] {'R', 'V', 'R', 'S', 2, 1});
            return false;
        }
        byte[] sn = new byte[32];
        rnd.nextBytes(sn);
        long iv = pingInterval;
        long to = pingTimeout;
        byte[] p = new byte[1 + nodeBytes.length + 64 + 8];
        p[0] = (byte) nodeBytes.length;
        System.arraycopy(nodeBytes, 0, p, 1, nodeBytes.length);
        System.arraycopy(cn, 0, p, 1 + nodeBytes.length, 32);
        System.arraycopy(sn, 0, p, 33 + nodeBytes.length, 32);
        int o = 65 + nodeBytes.length;
        p[o] = (byte) (iv >>> 24);
        p[o + 1] = (byte) (iv >>> 16);
        p[o + 2] = (byte) (iv >>> 8);
        p[o + 3] = (byte) iv;
        p[o + 4] = (byte) (to >>> 24);
        p[o + 5] = (byte) (to >>> 16);
        p[o + 6] = (byte) (to >>> 8);
        p[o + 7] = (byte) to;
        byte[] ch = new byte[6 + 32 + 8 + 32];
        System.arraycopy(new byte[] {'R', 'V', 'R', 'S', 2, 0}, 0, ch, 0, 6);
        System.arraycopy(sn, 0, ch, 6, 32);
        System.arraycopy(p, o, ch, 38, 8);
        System.arraycopy(Handshake.serverProof(key, p), 0, ch, 46, 32);
        out.write(ch);
        byte[] proof = new byte[32];
        in.readFully(proof);
        if (forcedVerdict != 0) {
            out.write(forcedVerdict);
            return false;
        }
        if (!MessageDigest.isEqual(Handshake.clientProof(key, p), proof)) {
            wrongProof.incrementAndGet();
            out.write(1);
            return false;
        }
        out.write(0);
        out.flush();
        accepted.incrementAndGet();
        return true;
    }

    @Override
    public void close() throws IOException {
        ss.close();
        synchronized (all) {
            for (Socket s : all) {
                try {
                    s.close();
                } catch (IOException ignored) {
                    // test helper
                }
            }
        }
    }
}
