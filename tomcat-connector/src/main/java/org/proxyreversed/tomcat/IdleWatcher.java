package org.proxyreversed.tomcat;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Holds the idle links of one connector on one thread and one selector:
 * answers httpd's PINGs with PONGs itself, closes links that stop receiving
 * PINGs (dead links), and hands a link over as soon as its first request byte
 * arrives. No idle link ever reaches Tomcat's poller or a processor thread.
 */
final class IdleWatcher implements Runnable {
    /** What happens to links that leave the watcher. */
    interface Sink {
        /** The first request byte arrived (kept in {@code link.prefix}). */
        void used(Link link);

        /** The link was closed; {@code byUs}: on stop/pause, not by httpd or a dead-link deadline. */
        void closed(Link link, boolean byUs, String why);
    }

    private static final long SCAN_EVERY = 200;
    private final Selector selector;
    private final Sink sink;
    private final long pingSlackMs;
    private final Reporter rep;
    private final ConcurrentLinkedQueue<Link> adds = new ConcurrentLinkedQueue<>();
    private final ConcurrentLinkedQueue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private final Set<Link> links = new HashSet<>();
    private final ByteBuffer one = ByteBuffer.allocate(1);
    private volatile boolean stopping;
    private volatile boolean closing;
    private volatile int count;
    private Thread thread;
    private long lastScan;

    IdleWatcher(Sink sink, long pingSlackMs, Reporter rep) throws IOException {
        this.selector = Selector.open();
        this.sink = sink;
        this.pingSlackMs = pingSlackMs;
        this.rep = rep;
    }

    void start(String name) {
        thread = new Thread(this, name);
        thread.setDaemon(true);
        thread.start();
    }

    /** Idle links held now. */
    int count() {
        return count;
    }

    /** Adds an authenticated, non-blocking link (from a dialer thread). */
    void add(Link l) {
        if (closing || stopping) {
            // Never registered: close it here, without touching the watcher's own state.
            try {
                l.ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
            sink.closed(l, true, "connector stopping");
            return;
        }
        adds.add(l);
        selector.wakeup();
    }

    /** Closes every idle link (and those added later) and waits, bounded, until done. */
    void closeAll() {
        closing = true;
        runOnThread(() -> {
            for (Link l : new ArrayList<>(links)) {
                close(l, true, "connector pausing or stopping");
            }
        });
    }

    /** Lets links in again after {@link #closeAll} (resume). */
    void reopen() {
        closing = false;
    }

    void stop() {
        closeAll();
        stopping = true;
        selector.wakeup();
        if (thread != null && thread != Thread.currentThread()) {
            try {
                thread.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    private void runOnThread(Runnable r) {
        if (thread == null || !thread.isAlive()) {
            r.run();
            return;
        }
        CountDownLatch done = new CountDownLatch(1);
        tasks.add(() -> {
            try {
                r.run();
            } finally {
                done.countDown();
            }
        });
        selector.wakeup();
        try {
            done.await(2, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void run() {
        try {
            while (!stopping) {
                selector.select(250);
                Runnable t;
                while ((t = tasks.poll()) != null) {
                    t.run();
                }
                Link l;
                while ((l = adds.poll()) != null) {
                    register(l);
                }
                Iterator<SelectionKey> it = selector.selectedKeys().iterator();
                while (it.hasNext()) {
                    SelectionKey k = it.next();
                    it.remove();
                    if (k.isValid() && k.isReadable()) {
                        readable((Link) k.attachment());
                    }
                }
                long now = Clock.now();
                if (now - lastScan >= SCAN_EVERY) {
                    lastScan = now;
                    scan(now);
                }
            }
        } catch (Throwable e) {
            rep.error("idle-link watcher failed: " + e);
        } finally {
            Runnable t;
            while ((t = tasks.poll()) != null) {
                t.run();
            }
            Link l;
            while ((l = adds.poll()) != null) {
                close(l, true, "connector stopping");
            }
            for (Link x : new ArrayList<>(links)) {
                close(x, true, "connector stopping");
            }
            try {
                selector.close();
            } catch (IOException ignored) {
                // nothing left to release
            }
        }
    }

    private void register(Link l) {
        if (closing || stopping) {
            close(l, true, "connector stopping");
            return;
        }
        try {
            l.key = l.ch.register(selector, SelectionKey.OP_READ, l);
            links.add(l);
            count = links.size();
        } catch (IOException | RuntimeException e) {
            close(l, false, "cannot watch the link: " + e);
        }
    }

    private void readable(Link l) {
        // Bounded per wake-up; the selector is level-triggered and comes back.
        for (int i = 0; i < 8; i++) {
            one.clear();
            int n;
            try {
                n = l.ch.read(one);
            } catch (IOException e) {
                close(l, false, "read failed: " + e.getMessage());
                return;
            }
            if (n < 0) {
                close(l, false, "closed by httpd");
                return;
            }
            if (n == 0) {
                return;
            }
            byte b = one.get(0);
            switch (l.parser.feed(b)) {
                case MORE:
                    continue;
                case PING:
                    if (!pong(l)) {
                        return;
                    }
                    l.lastPingAt = Clock.now();
                    l.pings++;
                    continue;
                case ERROR:
                    close(l, false, String.format("protocol error: 0xFF followed by 0x%02X on an idle link", b & 0xff));
                    return;
                case REQUEST:
                default:
                    l.key.cancel();
                    links.remove(l);
                    count = links.size();
                    l.prefix = new byte[] {b};
                    sink.used(l);
                    return;
            }
        }
    }

    private boolean pong(Link l) {
        ByteBuffer b = ByteBuffer.wrap(PingParser.PONG);
        try {
            l.ch.write(b);
        } catch (IOException e) {
            close(l, false, "cannot answer a PING: " + e.getMessage());
            return false;
        }
        if (b.hasRemaining()) {
            close(l, false, "cannot answer a PING: the send buffer is full");
            return false;
        }
        return true;
    }

    private void scan(long now) {
        List<Link> dead = null;
        for (Link l : links) {
            long limit = l.deadAfter(pingSlackMs);
            if (limit >= 0 && now - l.lastPingAt > limit) {
                if (dead == null) {
                    dead = new ArrayList<>();
                }
                dead.add(l);
            }
        }
        if (dead != null) {
            for (Link l : dead) {
                close(l, false, "no PING from httpd for " + (now - l.lastPingAt) + " ms (interval "
                        + l.pingIntervalMs + " ms + timeout " + l.pingTimeoutMs + " ms): dead link, dialling a replacement");
            }
        }
    }

    private void close(Link l, boolean byUs, String why) {
        boolean was = links.remove(l);
        count = links.size();
        if (l.key != null) {
            l.key.cancel();
        }
        try {
            l.ch.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        if (was || l.key == null) {
            sink.closed(l, byUs, why);
        }
    }
}
