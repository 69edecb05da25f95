package org.proxyreversed.tomcat;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Which ports of one front end to dial, and when: keeps {@code target} idle
 * links spread over the range, least-loaded eligible port first; backs off
 * failing ports exponentially with jitter; moves away from ports whose child
 * answers "pool full" or "shutting down"; backs off long on authentication
 * failures and reports them (first failure, then every 20th); paces
 * reconnection to a child that closes links right after accepting them; and
 * probes refused ports quickly while the rest of the range is live (the new
 * children of a graceful restart). Not thread-safe: one keeper thread owns it.
 * Times are milliseconds of a monotonic clock passed in by the caller.
 */
public final class PortPlanner {
    static final long BACKOFF_START = 50;
    static final int AUTH_BACKOFF_HEAD_START = 4;
    static final long AUTH_BACKOFF_MIN = 1000;
    static final long QUICK_CLOSE = 1000;
    static final long QUICK_STREAK_WINDOW = 30_000;
    static final long LIVE_RANGE_PROBE = 250;
    static final long RECENTLY_LIVE = 30_000;
    static final long PROBE_SPACING = 25;
    static final long RESTART_PROBE = 100;
    static final int AUTH_LOG_EVERY = 20;

    /** One port's state. */
    static final class Port {
        final int port;
        int idle;
        int dialing;
        /** Consecutive NET/AUTH failures, one per backoff round: dials in flight together that fail together count once. */
        int streak;
        /** When the last counted failure arrived. */
        long lastFail = Long.MIN_VALUE;
        /** Refused as full / shutting down since the last success. */
        boolean full;
        /** Consecutive accepted links httpd closed at once. */
        int quick;
        long lastQuick = Long.MIN_VALUE;
        long nextAllowed;

        Port(int port, long now) {
            this.port = port;
            this.nextAllowed = now;
        }
    }

    private final FrontEnd fe;
    private final int target;
    private final long maxBackoff;
    private final int maxInFlight;
    private final Reporter rep;
    private final SplittableRandom rnd;
    final Port[] ports;
    private int rotate;
    private long lastLive = Long.MIN_VALUE;
    private boolean ready;
    private boolean fullLogged;
    long dials;
    long accepted;
    long used;

    public PortPlanner(FrontEnd fe, int target, long maxBackoffMs, int maxInFlight, Reporter rep, long seed, long now) {
        this.fe = fe;
        this.target = target;
        this.maxBackoff = Math.max(maxBackoffMs, BACKOFF_START);
        this.maxInFlight = Math.max(1, maxInFlight);
        this.rep = rep;
        this.rnd = new SplittableRandom(seed);
        this.ports = new Port[fe.ports()];
        for (int i = 0; i < ports.length; i++) {
            ports[i] = new Port(fe.first + i, now);
        }
    }

    public FrontEnd frontEnd() {
        return fe;
    }

    public int idle() {
        int n = 0;
        for (Port p : ports) {
            n += p.idle;
        }
        return n;
    }

    public int dialing() {
        int n = 0;
        for (Port p : ports) {
            n += p.dialing;
        }
        return n;
    }

    Port port(int port) {
        return ports[port - fe.first];
    }

    private int healthy() {
        int n = 0;
        for (Port p : ports) {
            if (p.streak == 0 && !p.full) {
                n++;
            }
        }
        return n;
    }

    /** Uniform in [lo, hi]. */
    long between(long lo, long hi) {
        return hi <= lo ? lo : lo + rnd.nextLong(hi - lo + 1);
    }

    /** Exponential backoff for the n-th failure in a row, +-25 % jitter, capped. */
    public long backoff(int streak) {
        int shift = Math.min(Math.max(streak - 1, 0), 16);
        long d = Math.min(BACKOFF_START << shift, maxBackoff);
        return Math.min(between(d * 3 / 4, d * 5 / 4), maxBackoff);
    }

    /**
     * The ports to dial now (each once per dial; the caller starts them and
     * reports each result through {@link #onDialed}).
     */
    public List<Integer> fill(long now) {
        List<Integer> out = new ArrayList<>();
        // A failing port gets one probe when its backoff ends, whatever the totals:
        // that is how a new httpd child is found on a port that refused before.
        for (Port p : ports) {
            if (p.streak > 0 && p.dialing == 0 && p.nextAllowed <= now) {
                start(p, out);
            }
        }
        int n = ports.length;
        while (true) {
            int held = idle() + dialing();
            if (dialing() >= maxInFlight) {
                return out;
            }
            int share = (target + Math.max(healthy(), 1) - 1) / Math.max(healthy(), 1);
            int best = -1;
            int bestLoad = Integer.MAX_VALUE;
            for (int k = 0; k < n; k++) {
                int i = (rotate + k) % n;
                Port p = ports[i];
                if (p.nextAllowed > now) {
                    continue;
                }
                if ((p.streak > 0 || p.full || p.quick > 0) && p.dialing > 0) {
                    continue;
                }
                int load = p.idle + p.dialing;
                if (load < bestLoad) {
                    best = i;
                    bestLoad = load;
                }
            }
            if (best < 0) {
                return out;
            }
            if (held >= target && bestLoad >= share) {
                return out;
            }
            rotate = (best + 1) % n;
            start(ports[best], out);
        }
    }

    private void start(Port p, List<Integer> out) {
        p.dialing++;
        dials++;
        out.add(p.port);
    }

    /** When to look again (ms), or -1: a failing port's backoff end, or any port's while short. */
    public long nextWake(long now) {
        boolean shortOfLinks = idle() + dialing() < target;
        long best = -1;
        for (Port p : ports) {
            if ((shortOfLinks || (p.streak > 0 && p.dialing == 0)) && p.nextAllowed > now) {
                if (best < 0 || p.nextAllowed < best) {
                    best = p.nextAllowed;
                }
            }
        }
        return best;
    }

    private Long liveRangeProbe(long now) {
        if (idle() > 0) {
            lastLive = now;
        }
        if (lastLive == Long.MIN_VALUE || now - lastLive >= RECENTLY_LIVE) {
            return null;
        }
        int failing = 0;
        for (Port p : ports) {
            if (p.streak > 0) {
                failing++;
            }
        }
        long d = Math.max(LIVE_RANGE_PROBE, PROBE_SPACING * failing);
        return between(d * 3 / 4, d * 5 / 4);
    }

    /** A dial ended: {@code failure} null = accepted; {@code cancelled}: stopped meanwhile. */
    public void onDialed(int portNo, Handshake.Failure failure, boolean cancelled, long now) {
        onDialed(portNo, failure, cancelled, now, now);
    }

    /**
     * A dial that began at {@code started} ended. A NET/AUTH failure of a
     * dial that was already in flight when the port last failed is the same
     * event (a child not bound yet refuses every dial of a burst at once):
     * the backoff set then stands, instead of escalating once per dial.
     */
    public void onDialed(int portNo, Handshake.Failure failure, boolean cancelled, long started, long now) {
        Port p = port(portNo);
        p.dialing--;
        String addr = fe.addr(portNo);
        if (cancelled) {
            checkReady();
            return;
        }
        if (failure != null && failure.kind != Handshake.Kind.BUSY && p.lastFail != Long.MIN_VALUE
                && started <= p.lastFail) {
            rep.debug(addr + ": a dial begun before the last failure failed too; not counted");
            return;
        }
        if (failure == null) {
            accepted++;
            p.idle++;
            if (p.streak > 0) {
                rep.info(addr + " (front end " + fe + ") OK again after " + p.streak + " failed attempts");
                p.quick = 0;
                p.lastQuick = Long.MIN_VALUE;
            }
            p.streak = 0;
            p.full = false;
            if (p.quick > 0) {
                p.nextAllowed = now + backoff(p.quick);
            }
            checkReady();
            return;
        }
        ready = false;
        switch (failure.kind) {
            case BUSY: {
                long d = between(500, 1000);
                p.full = true;
                p.nextAllowed = now + d;
                rep.debug(addr + ": " + failure.getMessage() + "; retrying this port in " + d + " ms");
                if (!fullLogged) {
                    fullLogged = true;
                    rep.info("front end " + fe + " pool full: " + failure.getMessage() + " (" + idle() + "/" + target
                            + " idle links); backing off such ports and trying others");
                }
                break;
            }
            case NET: {
                p.streak++;
                p.lastFail = now;
                long d = backoff(p.streak);
                Long probe = liveRangeProbe(now);
                if (probe != null) {
                    d = Math.min(d, probe);
                }
                p.nextAllowed = now + d;
                if (p.streak == 1) {
                    rep.warn("dial " + addr + " (front end " + fe + ") failed: " + failure.getMessage()
                            + "; backing off (up to " + maxBackoff + " ms)");
                } else {
                    rep.debug("dial " + addr + " failed again (" + p.streak + " in a row): " + failure.getMessage()
                            + "; next try in " + d + " ms");
                }
                break;
            }
            case AUTH: {
                p.streak++;
                p.lastFail = now;
                // Retrying cannot fix a wrong secret soon: start around 1 s and grow to the cap.
                long d = Math.max(backoff(p.streak + AUTH_BACKOFF_HEAD_START), AUTH_BACKOFF_MIN);
                p.nextAllowed = now + d;
                if (p.streak == 1 || p.streak % AUTH_LOG_EVERY == 0) {
                    rep.error(failure.getMessage() + "; front end " + fe + ", attempt " + p.streak + ", backing off");
                } else {
                    rep.debug(failure.getMessage() + "; next try in " + d + " ms");
                }
                break;
            }
            default:
                break;
        }
    }

    /** An idle link received its first request byte. */
    public void onUsed(int portNo, long now) {
        Port p = port(portNo);
        lastLive = now;
        p.idle--;
        p.quick = 0;
        used++;
    }

    /** An idle link closed: by httpd, or by us ({@code byUs}, on stop). */
    public void onClosed(int portNo, long livedMs, boolean byUs, long now) {
        onClosed(portNo, livedMs, byUs, false, now);
    }

    /**
     * An idle link closed; {@code dead}: we closed it because httpd's PINGs
     * stopped (or it broke the idle protocol): replaced at once, not paced as
     * a child that closes links right after accepting them.
     */
    public void onClosed(int portNo, long livedMs, boolean byUs, boolean dead, long now) {
        Port p = port(portNo);
        lastLive = now;
        p.idle--;
        if (byUs) {
            return;
        }
        ready = false;
        if (dead) {
            checkReady();
            return;
        }
        String addr = fe.addr(portNo);
        long opened = now - livedMs;
        // A child that goes away closes all its idle links at once: a link already
        // open at the last quick close belongs to that same event.
        boolean sameEvent = p.lastQuick != Long.MIN_VALUE && opened <= p.lastQuick;
        if (livedMs < QUICK_CLOSE && sameEvent) {
            rep.debug(addr + ": another link closed in the same burst; not counted");
        } else if (livedMs < QUICK_CLOSE) {
            boolean recent = p.lastQuick != Long.MIN_VALUE && now - p.lastQuick < QUICK_STREAK_WINDOW;
            p.quick = recent ? p.quick + 1 : 1;
            p.lastQuick = now;
            long d = backoff(p.quick);
            p.nextAllowed = Math.max(p.nextAllowed, now + d);
            if (p.quick == 1) {
                rep.warn(addr + " (front end " + fe + "): httpd closed the link " + livedMs
                        + " ms after accepting it; backing off");
            } else {
                rep.debug(addr + ": closed right after accepting again (" + p.quick + " in a row); next try in " + d + " ms");
            }
        } else {
            p.quick = 0;
            rep.debug("idle link to " + addr + " closed after " + livedMs + " ms; redialing");
            // A child went away (graceful restart, or httpd shrinking its pool):
            // new children may be binding refused ports now.
            for (Port q : ports) {
                if (q.streak > 0) {
                    q.nextAllowed = Math.min(q.nextAllowed, now + between(RESTART_PROBE / 2, RESTART_PROBE));
                }
            }
        }
        checkReady();
    }

    private void checkReady() {
        int idle = idle();
        if (idle >= target && !ready) {
            rep.info("front end " + fe + " ready: " + idle + "/" + target + " idle links");
            ready = true;
            fullLogged = false;
        }
    }

    public boolean ready() {
        return ready;
    }
}
