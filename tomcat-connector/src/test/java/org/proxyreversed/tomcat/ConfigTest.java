package org.proxyreversed.tomcat;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.Test;

public class ConfigTest {
    static String error(ReversedConfig c, String host, int port) {
        try {
            c.validate(host, port);
        } catch (IllegalArgumentException e) {
            return e.getMessage();
        }
        fail("validation passed");
        return null;
    }

    @Test
    public void requiredAttributesAreNamed() {
        String e = error(new ReversedConfig(), null, -1);
        assertTrue(e, e.contains("\"node\" is required"));
        assertTrue(e, e.contains("\"secretFile\" is required"));
        assertTrue(e, e.contains("\"address\" and \"port\""));
        ReversedConfig c = new ReversedConfig();
        c.set("node", "app1");
        c.set("secretFile", "/x");
        e = error(c, null, 9000);
        assertTrue(e, e.contains("\"address\" is required with \"port\""));
    }

    @Test
    public void misspelledAttributesAreNamedWithASuggestion() {
        ReversedConfig c = new ReversedConfig();
        c.set("node", "app1");
        c.set("secretFile", "/x");
        c.unknown("secretFil");
        c.unknown("idleConections");
        c.unknown("completelyUnrelatedThing");
        String e = error(c, "127.0.0.1", 9000);
        assertTrue(e, e.contains("unknown attribute \"secretFil\" (did you mean \"secretFile\"?)"));
        assertTrue(e, e.contains("unknown attribute \"idleConections\" (did you mean \"idleConnections\"?)"));
        assertTrue(e, e.contains("unknown attribute \"completelyUnrelatedThing\""));
    }

    @Test
    public void badValuesAreNamed() {
        ReversedConfig c = new ReversedConfig();
        c.set("node", "app 1");
        c.set("secretFile", "/x");
        c.set("idleConnections", "many");
        c.set("tcpKeepAlive", "yes");
        c.set("ports", "0");
        c.set("frontends", "h:9000-8000");
        String e = error(c, "127.0.0.1", 9000);
        assertTrue(e, e.contains("\"node\"=\"app 1\" is invalid"));
        assertTrue(e, e.contains("\"idleConnections\"=\"many\" is not a whole number"));
        assertTrue(e, e.contains("\"tcpKeepAlive\"=\"yes\" is neither true nor false"));
        assertTrue(e, e.contains("\"ports\"=\"0\" is out of range"));
        assertTrue(e, e.contains("attribute \"frontends\": invalid front end"));
    }

    @Test
    public void defaultsAndFrontEnds() {
        ReversedConfig c = new ReversedConfig();
        c.set("node", "app1");
        c.set("secretFile", "/x");
        c.set("frontends", "web2:9100-9103, [::1]:9200");
        c.validate("web1", 9000);
        List<FrontEnd> f = c.frontEnds();
        assertEquals(3, f.size());
        assertEquals("web1:9000-9009", f.get(0).toString());
        assertEquals("web2:9100-9103", f.get(1).toString());
        assertEquals("[::1]:9200", f.get(2).toString());
        assertEquals(8, c.idleConnections);
        assertEquals(5000, c.maxBackoff);
        assertEquals(2000, c.connectTimeout);
        assertEquals(60, c.tcpKeepIdle);
        assertEquals(10, c.tcpKeepInterval);
        assertEquals(3, c.tcpKeepCount);
        assertEquals(30000, c.tcpUserTimeout);
    }

    @Test
    public void frontEndParsing() {
        FrontEnd f = FrontEnd.parse("127.0.0.1:9000-9003");
        assertEquals("127.0.0.1", f.host);
        assertEquals(4, f.ports());
        assertEquals("web1:8080", FrontEnd.parse("web1:8080").toString());
        assertEquals("[::1]:9001", FrontEnd.parse("[::1]:9000-9001").addr(9001));
        for (String bad : new String[] {"127.0.0.1", "h:0", "h:9003-9000", ":9000", "h:x", "h:1-2-3", "h:70000", "::1:9000"}) {
            try {
                FrontEnd.parse(bad);
                fail(bad);
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().contains(bad));
            }
        }
    }

    @Test
    public void secretsAreTrimmedBoundedAndNeverShown() throws IOException {
        assertArrayEquals("0123456789abcdef".getBytes(StandardCharsets.US_ASCII),
                Secret.fromBytes("  0123456789abcdef\n".getBytes(StandardCharsets.US_ASCII)));
        Path dir = Files.createTempDirectory("secret-test");
        try {
            Path p = dir.resolve("s");
            Files.write(p, "short-secret\n".getBytes(StandardCharsets.US_ASCII));
            try {
                Secret.load(p);
                fail();
            } catch (IOException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("at least 16"));
                assertTrue("the secret must not appear in errors", !e.getMessage().contains("short-secret"));
            }
            Files.write(p, new byte[5000]);
            try {
                Secret.load(p);
                fail();
            } catch (IOException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("larger than 4096"));
            }
            try {
                Secret.load(dir.resolve("missing"));
                fail();
            } catch (IOException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("cannot read secret file"));
            }
            Files.delete(p);
        } finally {
            Files.delete(dir);
        }
    }

    /** Every attribute and default of ReversedConfig appears in the README's attribute table. */
    @Test
    public void readmeDocumentsEveryAttributeAndDefault() throws IOException {
        Path readme = java.nio.file.Paths.get("README.md");
        assertTrue("run from the repository root", Files.exists(readme));
        List<String> rows = new java.util.ArrayList<>();
        for (String l : Files.readAllLines(readme, StandardCharsets.UTF_8)) {
            if (l.startsWith("| `")) {
                rows.add(l);
            }
        }
        for (java.util.Map.Entry<String, String> e : ReversedConfig.DEFAULTS.entrySet()) {
            String row = rows.stream().filter(r -> r.startsWith("| `" + e.getKey() + "`")
                    || r.matches("\\| .*`" + e.getKey() + "`.*\\|.*\\|.*\\|"))
                    .findFirst().orElse(null);
            assertTrue("README has no row for attribute " + e.getKey(), row != null);
            if (e.getValue() != null) {
                String[] cells = row.split("\\|");
                String last = cells[cells.length - 1].trim().isEmpty() ? cells[cells.length - 2] : cells[cells.length - 1];
                assertTrue("README default of " + e.getKey() + " is not " + e.getValue() + ": " + row,
                        last.contains("`" + e.getValue() + "`"));
            }
        }
    }
}
