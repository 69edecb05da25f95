package org.proxyreversed.tomcat;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.file.Paths;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;
import org.apache.tomcat.util.net.NioChannel;
import org.apache.tomcat.util.net.NioEndpoint;
import org.apache.tomcat.util.net.SocketEvent;
import org.apache.tomcat.util.net.SocketWrapperBase;

/**
 * A NioEndpoint that opens no server socket: it dials httpd's reversed ports
 * itself. Authenticated idle links wait in an {@link IdleWatcher} (PINGs are
 * answered there); the first request byte hands the link to Tomcat through
 * the ordinary Acceptor -> setSocketOptions -> Poller path, with that byte
 * given back to the socket wrapper before the processor reads, so that the
 * unmodified AjpProcessor / Http11Processor serve it. Tomcat's timeouts only
 * ever see links that carry requests.
 */
public class ReversedEndpoint extends NioEndpoint {
    private static final Log log = LogFactory.getLog(ReversedEndpoint.class);

    private final ReversedConfig cfg = new ReversedConfig();
    private String reversedHost;
    private byte[] secret;
    private final LinkedBlockingQueue<Link> handoff = new LinkedBlockingQueue<>();
    /** Links handed to Tomcat whose first request byte has not been given back yet. */
    private final ConcurrentHashMap<SocketChannel, Link> pendingPrefix = new ConcurrentHashMap<>();
    private final AtomicLong handedOff = new AtomicLong();
    private volatile IdleWatcher watcher;
    private volatile LinkKeeper keeper;
    private volatile Reporter rep = Reporter.of(log, "");

    public ReversedEndpoint() {
        // Tomcat's own acceptor loop stays (stop() relies on it); it takes
        // links from the hand-off queue instead of a server socket.
        setBindOnInit(true);
    }

    public ReversedConfig getReversedConfig() {
        return cfg;
    }

    // ---- attributes (reached from server.xml through the protocol) --------

    public void setNode(String v) {
        cfg.set("node", v);
    }

    public String getNode() {
        return cfg.get("node");
    }

    public void setSecretFile(String v) {
        cfg.set("secretFile", v);
    }

    public String getSecretFile() {
        return cfg.get("secretFile");
    }

    public void setPorts(String v) {
        cfg.set("ports", v);
    }

    public String getPorts() {
        return cfg.get("ports");
    }

    public void setFrontends(String v) {
        cfg.set("frontends", v);
    }

    public String getFrontends() {
        return cfg.get("frontends");
    }

    public void setIdleConnections(String v) {
        cfg.set("idleConnections", v);
    }

    public String getIdleConnections() {
        return cfg.get("idleConnections");
    }

    public void setMaxBackoff(String v) {
        cfg.set("maxBackoff", v);
    }

    public String getMaxBackoff() {
        return cfg.get("maxBackoff");
    }

    public void setConnectTimeout(String v) {
        cfg.set("connectTimeout", v);
    }

    public String getConnectTimeout() {
        return cfg.get("connectTimeout");
    }

    public void setHandshakeTimeout(String v) {
        cfg.set("handshakeTimeout", v);
    }

    public String getHandshakeTimeout() {
        return cfg.get("handshakeTimeout");
    }

    public void setDialerThreads(String v) {
        cfg.set("dialerThreads", v);
    }

    public String getDialerThreads() {
        return cfg.get("dialerThreads");
    }

    public void setMaxDialsInFlight(String v) {
        cfg.set("maxDialsInFlight", v);
    }

    public String getMaxDialsInFlight() {
        return cfg.get("maxDialsInFlight");
    }

    public void setTcpKeepAlive(String v) {
        cfg.set("tcpKeepAlive", v);
    }

    public String getTcpKeepAlive() {
        return cfg.get("tcpKeepAlive");
    }

    public void setTcpKeepIdle(String v) {
        cfg.set("tcpKeepIdle", v);
    }

    public String getTcpKeepIdle() {
        return cfg.get("tcpKeepIdle");
    }

    public void setTcpKeepInterval(String v) {
        cfg.set("tcpKeepInterval", v);
    }

    public String getTcpKeepInterval() {
        return cfg.get("tcpKeepInterval");
    }

    public void setTcpKeepCount(String v) {
        cfg.set("tcpKeepCount", v);
    }

    public String getTcpKeepCount() {
        return cfg.get("tcpKeepCount");
    }

    public void setTcpUserTimeout(String v) {
        cfg.set("tcpUserTimeout", v);
    }

    public String getTcpUserTimeout() {
        return cfg.get("tcpUserTimeout");
    }

    public void setPingSlack(String v) {
        cfg.set("pingSlack", v);
    }

    public String getPingSlack() {
        return cfg.get("pingSlack");
    }

    public void setReverseConnection(String v) {
        cfg.set("reverseConnection", v);
    }

    /** httpd's host as written in the address attribute (kept unresolved). */
    void setReversedHost(String host) {
        this.reversedHost = host;
    }

    String getReversedHost() {
        return reversedHost;
    }

    // ---- figures ------------------------------------------------------------

    /** Idle links held now (waiting for a request). */
    public int getIdleLinks() {
        IdleWatcher w = watcher;
        return w == null ? 0 : w.count();
    }

    /** Links handed to Tomcat since start. */
    public long getLinksUsed() {
        return handedOff.get();
    }

    // ---- names ----------------------------------------------------------------

    /**
     * Non-null, so that Connector.startInternal accepts port -1/0, and unique
     * per node and front ends (JMX object names and thread names use it).
     */
    @Override
    public String getId() {
        StringBuilder sb = new StringBuilder();
        String node = cfg.get("node");
        sb.append(node == null ? "unconfigured" : node.trim());
        try {
            ReversedConfig probe = new ReversedConfig();
            for (String k : ReversedConfig.DEFAULTS.keySet()) {
                String v = cfg.get(k);
                if (v != null) {
                    probe.set(k, v);
                }
            }
            probe.validate(reversedHost, getPort());
            for (FrontEnd f : probe.frontEnds()) {
                sb.append('-').append(f.idPart());
            }
        } catch (RuntimeException e) {
            sb.append('-').append(Integer.toHexString(System.identityHashCode(this)));
        }
        return sb.toString();
    }

    // ---- lifecycle --------------------------------------------------------------

    /** Opens nothing; validates the attributes and loads the secret (never logged). */
    @Override
    protected void initServerSocket() throws Exception {
        if (isSSLEnabled() && getName() != null && getName().startsWith("ajp")) {
            // mod_proxy_ajp never runs TLS (it builds no backend connection for mod_ssl).
            throw new IllegalArgumentException("mod_proxy_reversed connector: attribute \"SSLEnabled\"=\"true\" is not "
                    + "supported on a reversed AJP connector (httpd's mod_proxy_ajp cannot speak TLS); use "
                    + "ReversedHttp11Protocol with SSLEnabled=\"true\" and an https:// worker in httpd");
        }
        if (isSSLEnabled()) {
            // TLS channels come from Tomcat's channel cache (see setSocketOptions).
            if (socketProperties.getBufferPool() == 0) {
                throw new IllegalArgumentException("mod_proxy_reversed connector: SSLEnabled=\"true\" needs Tomcat's "
                        + "channel cache: attribute \"socket.bufferPool\" must not be 0");
            }
            if (socketProperties.getBufferPool() < 0) {
                socketProperties.setBufferPool(500);
            }
        }
        cfg.validate(reversedHost, getPort());
        try {
            secret = Secret.load(Paths.get(cfg.secretFile));
        } catch (IOException e) {
            throw new IllegalArgumentException("mod_proxy_reversed connector (node " + cfg.node + "): attribute \"secretFile\": "
                    + e.getMessage());
        }
        rep = Reporter.of(log, "[node " + cfg.node + "] ");
        rep.info("reversed connector: dialling " + cfg.frontEnds() + ", " + cfg.idleConnections
                + " idle links per front end, handshake version " + Handshake.VERSION);
    }

    @Override
    public void startInternal() throws Exception {
        super.startInternal();
        startLinks();
    }

    private synchronized void startLinks() throws IOException {
        String name = getName() == null ? "reversed-" + getId() : getName();
        if (watcher == null) {
            IdleWatcher w = new IdleWatcher(new IdleWatcher.Sink() {
                @Override
                public void used(Link l) {
                    LinkKeeper k = keeper;
                    if (k != null) {
                        k.used(l);
                    }
                    handoff.add(l);
                }

                @Override
                public void closed(Link l, boolean byUs, String why) {
                    LinkKeeper k = keeper;
                    if (k != null) {
                        k.closed(l, byUs, why);
                    }
                }
            }, cfg.pingSlack, rep);
            w.start(name + "-Idle");
            watcher = w;
        } else {
            watcher.reopen();
        }
        if (keeper == null) {
            LinkKeeper k = new LinkKeeper(cfg, secret, watcher, rep, name);
            keeper = k;
            k.start();
        }
    }

    /** Stops dialling and closes every idle link; links carrying requests are left alone. */
    private synchronized void stopLinks(boolean finalStop) {
        LinkKeeper k = keeper;
        keeper = null;
        if (k != null) {
            k.stop();
        }
        IdleWatcher w = watcher;
        if (w != null) {
            int n = w.count();
            if (finalStop) {
                watcher = null;
                w.stop();
            } else {
                w.closeAll();
            }
            if (n > 0) {
                rep.info("closed " + n + " idle links; " + connections.size() + " links carrying requests finish");
            }
        }
        Link l;
        while ((l = handoff.poll()) != null) {
            try {
                l.ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    @Override
    public void pause() {
        stopLinks(false);
        super.pause();
    }

    @Override
    public void resume() {
        super.resume();
        if (isRunning()) {
            try {
                startLinks();
            } catch (IOException e) {
                rep.error("cannot restart dialling on resume: " + e);
            }
        }
    }

    @Override
    public void stopInternal() {
        stopLinks(true);
        super.stopInternal();
    }

    /** The graceful-stop point (bindOnInit="false"): close idle links, let busy ones finish. */
    @Override
    protected void doCloseServerSocket() throws IOException {
        stopLinks(false);
    }

    /** There is no server socket whose accept() would need unlocking. */
    @Override
    protected void unlockAccept() {
    }

    /** Called by Tomcat's Acceptor: the next link whose first request byte arrived. */
    @Override
    protected SocketChannel serverSocketAccept() throws Exception {
        while (true) {
            Link l = handoff.poll(100, TimeUnit.MILLISECONDS);
            if (l != null) {
                if (!l.ch.isOpen()) {
                    continue;
                }
                pendingPrefix.put(l.ch, l);
                handedOff.incrementAndGet();
                return l.ch;
            }
            if (!running) {
                // The Acceptor exits quietly when it sees the endpoint stopped.
                throw new IOException("reversed connector stopped");
            }
        }
    }

    @Override
    protected boolean setSocketOptions(SocketChannel socket) {
        if (isSSLEnabled()) {
            // NioEndpoint takes its channel from this cache first: so every TLS
            // channel of this endpoint is one that gives the link's first byte
            // back to the TLS handshake (recycled ones are of the same class).
            org.apache.tomcat.util.collections.SynchronizedStack<NioChannel> cache = getNioChannels();
            if (cache == null) {
                rep.error("SSLEnabled=\"true\" needs Tomcat's channel cache: socket.bufferPool must not be 0; "
                        + "closing the link");
                pendingPrefix.remove(socket);
                return false;
            }
            // A recycled channel (always one of ours) is reused; a new one only when none is cached.
            NioChannel ch = cache.pop();
            if (ch == null) {
                ch = new PrefixSecureNioChannel(new org.apache.tomcat.util.net.SocketBufferHandler(
                        socketProperties.getAppReadBufSize(), socketProperties.getAppWriteBufSize(),
                        socketProperties.getDirectBuffer()), this, pendingPrefix);
            }
            cache.push(ch);
        }
        boolean ok = super.setSocketOptions(socket);
        if (!ok) {
            pendingPrefix.remove(socket);
        }
        return ok;
    }

    @Override
    protected void destroySocket(SocketChannel socket) {
        if (socket != null) {
            pendingPrefix.remove(socket);
        }
        super.destroySocket(socket);
    }

    @Override
    public void setHandler(Handler<NioChannel> handler) {
        super.setHandler(handler == null ? null : new PrefixHandler(handler));
    }

    /**
     * Gives the first request byte back to the socket wrapper before Tomcat's
     * handler (and its processor) reads anything from a newly handed-off link.
     */
    private final class PrefixHandler implements Handler<NioChannel> {
        private final Handler<NioChannel> inner;

        PrefixHandler(Handler<NioChannel> inner) {
            this.inner = inner;
        }

        private Link take(SocketWrapperBase<NioChannel> w) {
            NioChannel nc = w.getSocket();
            SocketChannel sc = nc == null ? null : nc.getIOChannel();
            return sc == null ? null : pendingPrefix.remove(sc);
        }

        @Override
        public SocketState process(SocketWrapperBase<NioChannel> w, SocketEvent event) {
            Link l = take(w);
            if (l != null && l.prefix != null) {
                w.unRead(ByteBuffer.wrap(l.prefix));
                l.prefix = null;
            }
            return inner.process(w, event);
        }

        @Override
        public Object getGlobal() {
            return inner.getGlobal();
        }

        @Override
        public void release(SocketWrapperBase<NioChannel> w) {
            take(w);
            inner.release(w);
        }

        @Override
        public void pause() {
            inner.pause();
        }

        @Override
        public void recycle() {
            inner.recycle();
        }
    }

    /**
     * For the protocols: an attribute that neither they nor the endpoint
     * took. With a setter of that name somewhere, the value was bad;
     * otherwise the name is unknown (a misspelling).
     */
    void unknownAttribute(Object protocol, String name, String value) {
        String setter = "set" + (name.isEmpty() ? "" : Character.toUpperCase(name.charAt(0)) + name.substring(1));
        boolean known = false;
        for (Object o : new Object[] {protocol, this}) {
            for (java.lang.reflect.Method m : o.getClass().getMethods()) {
                if (m.getName().equals(setter) && m.getParameterCount() == 1) {
                    known = true;
                }
            }
        }
        if (name.startsWith("socket.")) {
            String sub = name.substring(7);
            String ss = "set" + (sub.isEmpty() ? "" : Character.toUpperCase(sub.charAt(0)) + sub.substring(1));
            for (java.lang.reflect.Method m : socketProperties.getClass().getMethods()) {
                if (m.getName().equals(ss) && m.getParameterCount() == 1) {
                    known = true;
                }
            }
        }
        if (known) {
            cfg.refused(name, value);
        } else {
            cfg.unknown(name);
        }
    }

    static InetAddress resolveOrNull(String host) {
        try {
            return InetAddress.getByName(host);
        } catch (IOException | RuntimeException e) {
            return null;
        }
    }

    List<FrontEnd> frontEnds() {
        return cfg.frontEnds();
    }
}
