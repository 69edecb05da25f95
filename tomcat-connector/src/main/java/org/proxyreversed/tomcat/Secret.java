package org.proxyreversed.tomcat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Reads a node's secret file as the module and the agent do: surrounding
 * ASCII white space is not part of the secret, at least 16 bytes remain, the
 * file is at most 4096 bytes. Messages never contain the file's content.
 */
public final class Secret {
    public static final int MIN_LEN = 16;
    public static final int MAX_FILE = 4096;

    private Secret() {
    }

    public static byte[] load(Path path) throws IOException {
        byte[] raw;
        try (InputStream in = Files.newInputStream(path)) {
            raw = in.readNBytes(MAX_FILE + 1);
        } catch (IOException e) {
            throw new IOException("cannot read secret file " + path + ": " + e.getMessage());
        }
        if (raw.length > MAX_FILE) {
            throw new IOException("secret file " + path + " is larger than " + MAX_FILE + " bytes");
        }
        try {
            return fromBytes(raw);
        } catch (IllegalArgumentException e) {
            throw new IOException("secret file " + path + ": " + e.getMessage());
        } finally {
            Arrays.fill(raw, (byte) 0);
        }
    }

    public static byte[] fromBytes(byte[] raw) {
        int a = 0;
        int b = raw.length - 1;
        while (a <= b && isSpace(raw[a])) {
            a++;
        }
        while (b >= a && isSpace(raw[b])) {
            b--;
        }
        if (a > b) {
            throw new IllegalArgumentException("the secret file is empty");
        }
        int n = b - a + 1;
        if (n < MIN_LEN) {
            throw new IllegalArgumentException("the secret is " + n + " bytes long; at least " + MIN_LEN + " are required");
        }
        return Arrays.copyOfRange(raw, a, b + 1);
    }

    private static boolean isSpace(byte c) {
        // Rust's u8::is_ascii_whitespace: space, \t, \n, \x0C, \r.
        return c == ' ' || c == '\t' || c == '\n' || c == 0x0c || c == '\r';
    }
}
