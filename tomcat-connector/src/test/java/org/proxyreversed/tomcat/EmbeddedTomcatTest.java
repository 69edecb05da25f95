package org.proxyreversed.tomcat;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

import org.apache.catalina.Context;
import org.apache.catalina.LifecycleState;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;
import org.apache.tomcat.util.IntrospectionUtils;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/**
 * Embedded Tomcat with only a reversed connector, against {@link FakeHttpd}:
 * the unmodified Http11Processor / AjpProcessor serve requests on dialled
 * links; PINGs are answered without reaching them; Tomcat's connectionTimeout
 * does not close idle links; dead links are replaced; wrong secrets are
 * reported and not redialled blindly; misspelled attributes fail the start.
 */
public class EmbeddedTomcatTest {
    static final byte[] SECRET = "embedded test secret, long enough".getBytes(StandardCharsets.US_ASCII);
    static final AtomicInteger HITS = new AtomicInteger();

    private Path dir;
    private Path secretFile;
    private Tomcat tomcat;
    private final List<AutoCloseable> closeMe = new ArrayList<>();
    private final List<String> logged = Collections.synchronizedList(new ArrayList<>());
    private final Handler capture = new Handler() {
        @Override
        public void publish(LogRecord r) {
            logged.add(r.getLevel() + " " + r.getMessage());
        }

        @Override
        public void flush() {
        }

        @Override
        public void close() {
        }
    };

    public static class Hello extends HttpServlet {
        private static final long serialVersionUID = 1L;

        @Override
        protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            HITS.incrementAndGet();
            resp.setContentType("text/plain");
            resp.getWriter().print("hello " + req.getRequestURI());
        }
    }

    @Before
    public void setUp() throws IOException {
        dir = Files.createTempDirectory("reversed-embedded");
        secretFile = dir.resolve("app1.secret");
        Files.write(secretFile, SECRET);
        HITS.set(0);
        Logger.getLogger("org.proxyreversed.tomcat").addHandler(capture);
    }

    @After
    public void tearDown() throws Exception {
        Logger.getLogger("org.proxyreversed.tomcat").removeHandler(capture);
        if (tomcat != null) {
            try {
                tomcat.stop();
                tomcat.destroy();
            } catch (Exception ignored) {
                // best effort
            }
        }
        for (AutoCloseable c : closeMe) {
            c.close();
        }
        deleteTree(dir.toFile());
    }

    static void deleteTree(File f) {
        File[] kids = f.listFiles();
        if (kids != null) {
            for (File k : kids) {
                deleteTree(k);
            }
        }
        f.delete();
    }

    static boolean waitFor(long ms, BooleanSupplier cond) throws InterruptedException {
        long end = System.nanoTime() + ms * 1_000_000L;
        while (System.nanoTime() < end) {
            if (cond.getAsBoolean()) {
                return true;
            }
            Thread.sleep(10);
        }
        return cond.getAsBoolean();
    }

    FakeHttpd fake(byte[] secret) throws IOException {
        FakeHttpd f = new FakeHttpd("app1", secret);
        closeMe.add(f);
        return f;
    }

    Connector connector(String protocol, int port, int ports, String... attrs) {
        Connector c = new Connector(protocol);
        c.setProperty("node", "app1");
        c.setProperty("secretFile", secretFile.toString());
        c.setProperty("address", "127.0.0.1");
        c.setPort(port);
        c.setProperty("ports", Integer.toString(ports));
        c.setProperty("maxBackoff", "1000");
        for (int i = 0; i + 1 < attrs.length; i += 2) {
            assertTrue("attribute " + attrs[i], c.setProperty(attrs[i], attrs[i + 1]));
        }
        return c;
    }

    void start(Connector... cs) throws Exception {
        tomcat = new Tomcat();
        tomcat.setBaseDir(dir.resolve("base").toString());
        for (Connector c : cs) {
            tomcat.getService().addConnector(c);
        }
        Context ctx = tomcat.addContext("", dir.toString());
        Tomcat.addServlet(ctx, "hello", new Hello());
        ctx.addServletMappingDecoded("/hello/*", "hello");
        tomcat.start();
    }

    static byte[] readN(Socket s, int n, long ms) throws IOException {
        s.setSoTimeout((int) ms);
        byte[] b = new byte[n];
        int got = 0;
        InputStream in = s.getInputStream();
        while (got < n) {
            int r = in.read(b, got, n - got);
            if (r < 0) {
                throw new IOException("EOF after " + got + " bytes");
            }
            got += r;
        }
        return b;
    }

    static void ping(Socket s) throws IOException {
        OutputStream o = s.getOutputStream();
        o.write(new byte[] {(byte) 0xff, 0x01});
        o.flush();
        assertArrayEquals("PONG", new byte[] {(byte) 0xff, 0x02}, readN(s, 2, 2000));
    }

    /** Reads one HTTP/1.1 response with Content-Length; returns "status body". */
    static String httpResponse(Socket s) throws IOException {
        s.setSoTimeout(5000);
        InputStream in = s.getInputStream();
        ByteArrayOutputStream head = new ByteArrayOutputStream();
        int state = 0;
        while (state < 4) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("EOF in headers: " + head);
            }
            head.write(b);
            state = (b == '\r' && (state == 0 || state == 2)) || (b == '\n' && (state == 1 || state == 3)) ? state + 1 : 0;
        }
        String h = head.toString(StandardCharsets.ISO_8859_1);
        int cl = -1;
        for (String line : h.split("\r\n")) {
            if (line.toLowerCase().startsWith("content-length:")) {
                cl = Integer.parseInt(line.substring(15).trim());
            }
        }
        assertTrue("Content-Length in " + h, cl >= 0);
        byte[] body = readN(s, cl, 5000);
        return h.substring(9, 12) + " " + new String(body, StandardCharsets.UTF_8);
    }

    static void get(Socket s, String path) throws IOException {
        s.getOutputStream().write(("GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        s.getOutputStream().flush();
    }

    @Test
    public void httpIsServedOnDialledLinksAndPingsNeverReachTomcat() throws Exception {
        FakeHttpd f = fake(SECRET);
        start(connector("org.proxyreversed.tomcat.ReversedHttp11Protocol", f.port(), 1, "idleConnections", "3",
                "connectionTimeout", "500"));
        assertTrue("3 links accepted", waitFor(5000, () -> f.accepted.get() >= 3));
        Socket s = f.takeLink(2000);
        assertNotNull(s);
        ping(s);
        // Longer than connectionTimeout: Tomcat never sees idle links, so it cannot time them out.
        Thread.sleep(1200);
        ping(s);
        assertEquals("PINGs never reach a servlet", 0, HITS.get());
        get(s, "/hello/one");
        assertEquals("200 hello /hello/one", httpResponse(s));
        // A replacement is dialled as soon as the first request byte arrives.
        assertTrue("replacement dialled", waitFor(2000, () -> f.accepted.get() >= 4));
        // Keep-alive after the first request: no Tomcat timeout (keepAliveTimeout=-1 by default).
        Thread.sleep(700);
        get(s, "/hello/two");
        assertEquals("200 hello /hello/two", httpResponse(s));
        assertEquals(2, HITS.get());
        // Tomcat stop: idle links are closed promptly.
        Socket idle = f.takeLink(2000);
        assertNotNull(idle);
        long t0 = System.nanoTime();
        tomcat.stop();
        idle.setSoTimeout(3000);
        assertEquals("idle link closed on stop", -1, idle.getInputStream().read());
        long ms = (System.nanoTime() - t0) / 1_000_000L;
        assertTrue("closed within " + ms + " ms", ms < 3000);
        System.err.println("FIGURE tomcat-connector-java-stop | idle link closed " + ms + " ms after stop()");
    }

    @Test
    public void ajpCpingIsAnsweredByTomcatsAjpProcessor() throws Exception {
        FakeHttpd f = fake(SECRET);
        start(connector("org.proxyreversed.tomcat.ReversedAjpProtocol", f.port(), 1, "idleConnections", "2",
                "secretRequired", "false"));
        Socket s = f.takeLink(5000);
        assertNotNull(s);
        ping(s);
        ping(s);
        Thread.sleep(300);
        org.apache.tomcat.util.threads.ThreadPoolExecutor exec = (org.apache.tomcat.util.threads.ThreadPoolExecutor)
                tomcat.getService().findConnectors()[0].getProtocolHandler().getExecutor();
        assertEquals("PINGs and idle links never reach Tomcat's processor threads", 0, exec.getTaskCount());
        OutputStream o = s.getOutputStream();
        o.write(new byte[] {0x12, 0x34, 0x00, 0x01, 0x0a});
        o.flush();
        assertArrayEquals("CPONG", new byte[] {0x41, 0x42, 0x00, 0x01, 0x09}, readN(s, 5, 3000));
        assertTrue("the request ran on a processor thread", exec.getTaskCount() >= 1);
        Object rc = IntrospectionUtils.getProperty(tomcat.getService().findConnectors()[0].getProtocolHandler(),
                "reverseConnection");
        assertEquals(Boolean.TRUE, rc);
    }

    @Test
    public void deadLinksAreClosedAndReplaced() throws Exception {
        FakeHttpd f = fake(SECRET);
        f.pingInterval = 300;
        f.pingTimeout = 200;
        start(connector("org.proxyreversed.tomcat.ReversedHttp11Protocol", f.port(), 1, "idleConnections", "2"));
        Socket silent = f.takeLink(5000);
        Socket pinged = f.takeLink(5000);
        assertNotNull(silent);
        assertNotNull(pinged);
        long t0 = System.nanoTime();
        int before = f.accepted.get();
        silent.setSoTimeout(100);
        long closedAt = -1;
        for (int i = 0; i < 25 && closedAt < 0; i++) {
            ping(pinged);
            try {
                if (silent.getInputStream().read() < 0) {
                    closedAt = (System.nanoTime() - t0) / 1_000_000L;
                }
            } catch (SocketTimeoutException e) {
                // still open
            }
        }
        assertTrue("the link without PINGs was closed", closedAt > 0);
        // interval + timeout = 500 ms after the verdict (checked every 200 ms)
        assertTrue("closed after " + closedAt + " ms", closedAt < 1500);
        ping(pinged);
        assertTrue("a replacement was dialled", waitFor(2000, () -> f.accepted.get() > before));
        assertTrue(logged.toString(), logged.stream().anyMatch(m -> m.contains("no PING from httpd")));
        assertTrue("a dead link is not paced as a quick close: " + logged,
                logged.stream().noneMatch(m -> m.contains("after accepting it")));
        System.err.println("FIGURE tomcat-connector-java-dead-link | silent link closed " + closedAt
                + " ms after being taken (interval 300 + timeout 200); pinged link alive");
    }

    @Test
    public void wrongSecretIsReportedAndNotRedialledBlindly() throws Exception {
        FakeHttpd f = fake("another secret, also long enough".getBytes(StandardCharsets.US_ASCII));
        start(connector("org.proxyreversed.tomcat.ReversedHttp11Protocol", f.port(), 1, "idleConnections", "4"));
        Thread.sleep(3000);
        int hellos = f.hellos.get();
        assertEquals("no link accepted", 0, f.accepted.get());
        // The first fill dials idleConnections at once; after the failures, one probe at a time, >= 1 s apart.
        assertTrue("hellos in 3 s: " + hellos, hellos >= 1 && hellos <= 4 + 3);
        assertTrue(logged.toString(), logged.stream().anyMatch(m -> m.startsWith("SEVERE") && m.contains("failed to prove the secret")));
        assertTrue("the secret is never logged", logged.stream().noneMatch(m -> m.contains("long enough")));
        System.err.println("FIGURE tomcat-connector-java-wrong-secret | " + hellos + " dials in 3 s, error logged");
    }

    @Test
    public void poolFullMovesToTheOtherPort() throws Exception {
        FakeHttpd a = null;
        FakeHttpd b = null;
        // Below Linux's ephemeral range (32768+), where outgoing connections
        // of a busy machine do not take the second port.
        java.util.Random rnd = new java.util.Random(ProcessHandle.current().pid());
        for (int i = 0; i < 200 && b == null; i++) {
            int p = 20000 + rnd.nextInt(12000);
            try {
                a = new FakeHttpd("app1", SECRET, p);
            } catch (IOException e) {
                continue;
            }
            try {
                b = new FakeHttpd("app1", SECRET, p + 1);
            } catch (IOException e) {
                a.close();
                a = null;
            }
        }
        assertNotNull("two adjacent free ports", b);
        closeMe.add(a);
        closeMe.add(b);
        a.forcedVerdict = 3;
        start(connector("org.proxyreversed.tomcat.ReversedHttp11Protocol", a.port(), 2, "idleConnections", "4"));
        FakeHttpd bb = b;
        assertTrue("4 links on the port with room", waitFor(5000, () -> bb.accepted.get() >= 4));
        Thread.sleep(2000);
        int fullHellos = a.hellos.get();
        assertTrue("the full port is retried every 0.5-1 s, not hammered: " + fullHellos, fullHellos >= 1 && fullHellos <= 6);
        assertEquals(4, b.accepted.get());
    }

    @Test
    public void misspelledAndMissingAttributesFailTheStart() throws Exception {
        Connector c = new Connector("org.proxyreversed.tomcat.ReversedHttp11Protocol");
        c.setProperty("node", "app1");
        c.setProperty("secretFil", secretFile.toString());
        c.setProperty("maxThreads", "many");
        c.setThrowOnFailure(true);
        try {
            start(c);
            fail("started with a misspelled attribute");
        } catch (Exception e) {
            StringBuilder chain = new StringBuilder();
            for (Throwable t = e; t != null; t = t.getCause()) {
                chain.append(t.getMessage()).append(" / ");
            }
            String m = chain.toString();
            assertTrue(m, m.contains("unknown attribute \"secretFil\" (did you mean \"secretFile\"?)"));
            assertTrue(m, m.contains("\"secretFile\" is required"));
            assertTrue(m, m.contains("no front end"));
            assertTrue(m, m.contains("attribute \"maxThreads\"=\"many\" was not accepted by Tomcat (bad value)"));
            assertTrue(m, !m.contains("unknown attribute \"maxThreads\""));
        }
        assertEquals(LifecycleState.FAILED, c.getState());
    }

    @Test
    public void tlsOnAnAjpLinkIsRefusedAtStart() throws Exception {
        // mod_proxy_ajp cannot speak TLS; the HTTP protocol serves TLS (tests/tls.rs).
        Connector c = connector("org.proxyreversed.tomcat.ReversedAjpProtocol", 9, 1, "SSLEnabled", "true");
        c.setThrowOnFailure(true);
        try {
            start(c);
            fail("an AJP connector started with SSLEnabled=true");
        } catch (Exception e) {
            StringBuilder chain = new StringBuilder();
            for (Throwable t = e; t != null; t = t.getCause()) {
                chain.append(t.getMessage()).append(" / ");
            }
            assertTrue(chain.toString(), chain.toString().contains("\"SSLEnabled\"=\"true\" is not supported on a reversed AJP connector"));
        }
    }
}
