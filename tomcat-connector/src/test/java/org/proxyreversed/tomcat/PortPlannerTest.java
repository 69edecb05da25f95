package org.proxyreversed.tomcat;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.junit.Test;

public class PortPlannerTest {
    /** Records what the planner reports. */
    static final class Rec implements Reporter {
        final List<String> errors = new ArrayList<>();
        final List<String> warns = new ArrayList<>();
        final List<String> infos = new ArrayList<>();

        @Override
        public void error(String m) {
            errors.add(m);
        }

        @Override
        public void warn(String m) {
            warns.add(m);
        }

        @Override
        public void info(String m) {
            infos.add(m);
        }

        @Override
        public void debug(String m) {
        }
    }

    static Handshake.Failure fail(Handshake.Kind k) {
        return new Handshake.Failure(k, k + " failure");
    }

    static Map<Integer, Integer> count(List<Integer> ports) {
        Map<Integer, Integer> m = new HashMap<>();
        for (int p : ports) {
            m.merge(p, 1, Integer::sum);
        }
        return m;
    }

    @Test
    public void spreadsOverAllPortsLeastLoadedFirst() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9003), 8, 5000, 64, new Rec(), 1, 0);
        List<Integer> d = pl.fill(0);
        assertEquals(8, d.size());
        Map<Integer, Integer> c = count(d);
        assertEquals(4, c.size());
        for (int n : c.values()) {
            assertEquals(2, n);
        }
        for (int p : d) {
            pl.onDialed(p, null, false, 1);
        }
        assertEquals(8, pl.idle());
        assertTrue(pl.fill(2).isEmpty());
        assertTrue(pl.ready());
        // A link gets its first request byte: one replacement, on the port that lost it.
        pl.onUsed(9002, 3);
        assertEquals(Collections.singletonList(9002), pl.fill(3));
    }

    @Test
    public void everyHealthyPortGetsALinkEvenWithASmallTarget() {
        // Each port is an httpd child: a child without a link would answer 503.
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9009), 2, 5000, 64, new Rec(), 2, 0);
        List<Integer> d = pl.fill(0);
        assertEquals(10, d.size());
        assertEquals(10, count(d).size());
    }

    @Test
    public void backoffGrowsWithJitterAndIsCapped() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 1, 1), 1, 2000, 64, new Rec(), 3, 0);
        for (int streak = 1; streak <= 30; streak++) {
            long base = Math.min(50L << Math.min(streak - 1, 16), 2000);
            for (int i = 0; i < 50; i++) {
                long d = pl.backoff(streak);
                assertTrue("streak " + streak + ": " + d, d >= base * 3 / 4 && d <= Math.min(base * 5 / 4, 2000));
            }
        }
        // Jitter: not always the same value.
        long a = pl.backoff(5);
        boolean differs = false;
        for (int i = 0; i < 20 && !differs; i++) {
            differs = pl.backoff(5) != a;
        }
        assertTrue(differs);
    }

    @Test
    public void failingPortIsBackedOffAndProbedAlone() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9001), 2, 5000, 64, new Rec(), 4, 0);
        List<Integer> d = pl.fill(0);
        assertEquals(2, d.size());
        pl.onDialed(9000, null, false, 0);
        pl.onDialed(9001, fail(Handshake.Kind.NET), false, 0);
        // 9001 is backed off (about 50 ms); 9000 takes the other link meanwhile.
        List<Integer> now = pl.fill(1);
        assertEquals(Collections.singletonList(9000), now);
        pl.onDialed(9000, null, false, 2);
        assertTrue(pl.fill(3).isEmpty());
        long wake = pl.nextWake(3);
        assertTrue("wake " + wake, wake >= 37 && wake <= 63);
        // When its backoff ends, one probe of the failing port, whatever the totals.
        assertEquals(Collections.singletonList(9001), pl.fill(100));
        assertTrue(pl.fill(101).isEmpty());
    }

    @Test
    public void poolFullMovesToOtherPorts() {
        Rec rec = new Rec();
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9002), 3, 5000, 64, rec, 5, 0);
        List<Integer> d = pl.fill(0);
        assertEquals(3, d.size());
        pl.onDialed(9000, fail(Handshake.Kind.BUSY), false, 10);
        pl.onDialed(9001, null, false, 10);
        pl.onDialed(9002, null, false, 10);
        List<Integer> again = pl.fill(11);
        assertFalse("a full port is not redialled at once: " + again, again.contains(9000));
        assertEquals(2, again.size());
        for (int p : again) {
            pl.onDialed(p, null, false, 12);
        }
        // Links used on the healthy ports: replacements avoid 9000 until its 0.5-1 s are over ...
        pl.onUsed(9001, 20);
        pl.onUsed(9002, 20);
        List<Integer> soon = pl.fill(20);
        assertFalse(soon.toString(), soon.contains(9000));
        assertTrue(pl.nextWake(20) >= 510 && pl.nextWake(20) <= 1010 || pl.nextWake(20) == -1);
        for (int p : soon) {
            pl.onDialed(p, null, false, 21);
        }
        // ... and then the least-loaded port, 9000, is tried again.
        pl.onUsed(9001, 1100);
        List<Integer> later = pl.fill(1100);
        assertEquals(later.toString(), Integer.valueOf(9000), later.get(0));
        assertEquals(1, rec.infos.stream().filter(m -> m.contains("pool full")).count());
    }

    @Test
    public void wrongSecretIsReportedAndNotRedialledBlindly() {
        Rec rec = new Rec();
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9000), 4, 5000, 64, rec, 6, 0);
        long now = 0;
        int dials = 0;
        // Simulate 60 s: every dial fails authentication.
        while (now < 60_000) {
            List<Integer> d = pl.fill(now);
            for (int p : d) {
                dials++;
                pl.onDialed(p, fail(Handshake.Kind.AUTH), false, now);
            }
            long w = pl.nextWake(now);
            now = w < 0 ? now + 1000 : Math.max(w, now + 1);
        }
        // At least 1 s apart at first, growing to the 5 s cap: ~15 attempts a minute, not thousands.
        assertTrue("dials in 60 s: " + dials, dials >= 10 && dials <= 30);
        assertTrue("reported at the first failure: " + rec.errors, rec.errors.size() >= 1);
        assertTrue(rec.errors.get(0).contains("AUTH failure"));
        // Reported again every 20 attempts, not at each.
        assertEquals(1 + dials / PortPlanner.AUTH_LOG_EVERY, rec.errors.size());
    }

    @Test
    public void quickClosesArePaced() {
        Rec rec = new Rec();
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9000), 1, 5000, 64, rec, 7, 0);
        long now = 0;
        int dials = 0;
        while (now < 10_000) {
            for (int p : pl.fill(now)) {
                dials++;
                pl.onDialed(p, null, false, now);
                // httpd closes each accepted link 10 ms later
                pl.onClosed(p, 10, false, now + 10);
            }
            long w = pl.nextWake(now + 10);
            now = w < 0 ? now + 100 : Math.max(w, now + 11);
        }
        assertTrue("dials in 10 s against a child that closes at once: " + dials, dials <= 20);
        assertEquals(1, rec.warns.size());
    }

    @Test
    public void inFlightDialsAreBounded() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9009), 100, 5000, 16, new Rec(), 8, 0);
        assertEquals(16, pl.fill(0).size());
        assertTrue(pl.fill(1).isEmpty());
        pl.onDialed(9000, null, false, 2);
        assertEquals(1, pl.fill(2).size());
    }

    /** A child not bound yet refuses a whole burst at once: one failure, not eight (backoff ~50 ms, not 5 s). */
    @Test
    public void dialsRefusedTogetherCountOnce() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9000), 8, 5000, 64, new Rec(), 11, 0);
        List<Integer> d = pl.fill(0);
        assertEquals(8, d.size());
        for (int p : d) {
            pl.onDialed(p, fail(Handshake.Kind.NET), false, 0, 1);
        }
        assertEquals(1, pl.port(9000).streak);
        long wake = pl.nextWake(1);
        assertTrue("backoff after one counted failure: " + wake, wake >= 1 + 37 && wake <= 1 + 63);
        // The probe after the backoff is a new round: its failure counts.
        assertEquals(Collections.singletonList(9000), pl.fill(wake));
        pl.onDialed(9000, fail(Handshake.Kind.NET), false, wake, wake + 1);
        assertEquals(2, pl.port(9000).streak);
    }

    @Test
    public void deadLinksAreReplacedAtOnce() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9000), 1, 5000, 64, new Rec(), 10, 0);
        for (int p : pl.fill(0)) {
            pl.onDialed(p, null, false, 0);
        }
        pl.onClosed(9000, 600, false, true, 600);
        assertEquals(1, pl.fill(600).size());
    }

    @Test
    public void linkClosedByHttpdAfterAWhileIsReplacedAtOnce() {
        PortPlanner pl = new PortPlanner(new FrontEnd("h", 9000, 9000), 1, 5000, 64, new Rec(), 9, 0);
        for (int p : pl.fill(0)) {
            pl.onDialed(p, null, false, 0);
        }
        pl.onClosed(9000, 5000, false, 5000);
        assertEquals("a link httpd closed after a while is replaced at once", 1, pl.fill(5000).size());
    }
}
