package org.proxyreversed.tomcat;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.SocketChannel;
import java.security.SecureRandom;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import javax.crypto.spec.SecretKeySpec;

/**
 * Keeps the idle links of every front end of one connector: one keeper
 * thread owns the {@link PortPlanner}s and starts dials on a small pool of
 * dialer threads (blocking connect and handshake, bounded by the connect and
 * handshake timeouts); accepted links go to the {@link IdleWatcher}. Events
 * (dial results, used and closed links) reach the keeper through one queue.
 */
final class LinkKeeper implements Runnable {
    private final ReversedConfig cfg;
    private final SecretKeySpec key;
    private final List<FrontEnd> frontEnds;
    private final PortPlanner[] planners;
    private final IdleWatcher watcher;
    private final Reporter rep;
    private final ExecutorService dialers;
    private final LinkedBlockingQueue<Runnable> events = new LinkedBlockingQueue<>();
    private final SecureRandom rnd = new SecureRandom();
    private volatile boolean running = true;
    private Thread thread;

    LinkKeeper(ReversedConfig cfg, byte[] secret, IdleWatcher watcher, Reporter rep, String name) {
        this.cfg = cfg;
        this.key = Handshake.key(secret);
        this.frontEnds = cfg.frontEnds();
        this.watcher = watcher;
        this.rep = rep;
        long now = Clock.now();
        this.planners = new PortPlanner[frontEnds.size()];
        for (int i = 0; i < planners.length; i++) {
            planners[i] = new PortPlanner(frontEnds.get(i), cfg.idleConnections, cfg.maxBackoff, cfg.maxDialsInFlight,
                    rep, rnd.nextLong(), now);
        }
        AtomicInteger seq = new AtomicInteger();
        ThreadPoolExecutor ex = new ThreadPoolExecutor(cfg.dialerThreads, cfg.dialerThreads, 30, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(), r -> {
                    Thread t = new Thread(r, name + "-Dialer-" + seq.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                });
        ex.allowCoreThreadTimeOut(true);
        this.dialers = ex;
        this.thread = new Thread(this, name + "-Keeper");
        this.thread.setDaemon(true);
    }

    void start() {
        thread.start();
    }

    /** Stops dialling: dials in flight are interrupted (their sockets close). */
    void stop() {
        running = false;
        thread.interrupt();
        dialers.shutdownNow();
        try {
            thread.join(2000);
            dialers.awaitTermination(cfg.connectTimeout + cfg.handshakeTimeout, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** An idle link got its first request byte (from the watcher thread). */
    void used(Link l) {
        long now = Clock.now();
        events.add(() -> planners[l.frontEnd].onUsed(l.port, now));
    }

    /** An idle link closed (from the watcher thread). */
    void closed(Link l, boolean byUs, String why) {
        long now = Clock.now();
        long lived = now - l.acceptedAt;
        boolean dead = !byUs && (why.startsWith("no PING") || why.startsWith("protocol error"));
        if (dead) {
            rep.warn("idle link to " + l.peer + " (front end " + frontEnds.get(l.frontEnd) + "): " + why);
        } else if (!byUs) {
            rep.debug("idle link to " + l.peer + " (front end " + frontEnds.get(l.frontEnd) + ", " + l.pings
                    + " pings) closed after " + lived + " ms: " + why);
        }
        events.add(() -> planners[l.frontEnd].onClosed(l.port, lived, byUs, dead, now));
    }

    @Override
    public void run() {
        try {
            while (running) {
                long now = Clock.now();
                long wake = -1;
                for (int i = 0; i < planners.length; i++) {
                    for (int port : planners[i].fill(now)) {
                        startDial(i, port);
                    }
                    long w = planners[i].nextWake(now);
                    if (w >= 0 && (wake < 0 || w < wake)) {
                        wake = w;
                    }
                }
                long wait = wake < 0 ? 1000 : Math.max(1, Math.min(1000, wake - now));
                Runnable ev = events.poll(wait, TimeUnit.MILLISECONDS);
                while (ev != null) {
                    ev.run();
                    ev = events.poll();
                }
            }
        } catch (InterruptedException e) {
            // stop()
        } catch (Throwable e) {
            rep.error("link keeper failed: " + e);
        } finally {
            for (PortPlanner p : planners) {
                rep.info("front end " + p.frontEnd() + ": stopping dialling (" + p.dials + " dials, " + p.accepted
                        + " accepted, " + p.used + " used)");
            }
        }
    }

    private void startDial(int fe, int port) {
        long started = Clock.now();
        try {
            dialers.execute(() -> dial(fe, port, started));
        } catch (RuntimeException rejected) {
            events.add(() -> planners[fe].onDialed(port, null, true, Clock.now()));
        }
    }

    private void dial(int fe, int port, long started) {
        FrontEnd f = frontEnds.get(fe);
        String addr = f.addr(port);
        SocketChannel ch = null;
        try {
            if (!running) {
                throw new InterruptedException();
            }
            ch = SocketChannel.open();
            InetSocketAddress sa = new InetSocketAddress(f.host, port);
            if (sa.isUnresolved()) {
                throw new Handshake.Failure(Handshake.Kind.NET, "cannot resolve " + f.host);
            }
            ch.socket().connect(sa, (int) cfg.connectTimeout);
            TcpOptions.apply(ch, cfg, rep);
            Handshake.Accepted a = Handshake.dial(ch.socket(), cfg.node, key, rnd, cfg.handshakeTimeout, addr);
            ch.configureBlocking(false);
            if (!running) {
                throw new InterruptedException();
            }
            long now = Clock.now();
            Link l = new Link(ch, fe, port, addr, now, a.pingIntervalMs, a.pingTimeoutMs);
            // The result first: the watcher's events for this link come after it.
            events.add(() -> planners[fe].onDialed(port, null, false, now));
            rep.debug("link to " + addr + " (front end " + f + ") accepted; pings every " + a.pingIntervalMs
                    + " ms, timeout " + a.pingTimeoutMs + " ms");
            watcher.add(l);
            return;
        } catch (Handshake.Failure e) {
            closeQuietly(ch);
            events.add(() -> planners[fe].onDialed(port, e, false, started, Clock.now()));
        } catch (InterruptedException e) {
            closeQuietly(ch);
            events.add(() -> planners[fe].onDialed(port, null, true, Clock.now()));
        } catch (IOException | RuntimeException e) {
            closeQuietly(ch);
            boolean cancelled = !running;
            String msg = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
            Handshake.Failure f2 = new Handshake.Failure(Handshake.Kind.NET, msg);
            events.add(() -> planners[fe].onDialed(port, cancelled ? null : f2, cancelled, started, Clock.now()));
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    /** Idle links per front end (for logs and tests). */
    int idle(int fe) {
        return planners[fe].idle();
    }
}
