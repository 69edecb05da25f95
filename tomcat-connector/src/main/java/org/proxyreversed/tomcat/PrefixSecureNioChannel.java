package org.proxyreversed.tomcat;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.util.Map;

import org.apache.tomcat.util.net.NioEndpoint;
import org.apache.tomcat.util.net.SecureNioChannel;
import org.apache.tomcat.util.net.SocketBufferHandler;

/**
 * Tomcat's TLS channel for a reversed link (SSLEnabled="true" on the HTTP
 * protocol): the idle watcher has already read the link's first byte (the
 * first byte of httpd's TLS ClientHello) to tell a request from a PING.
 * Tomcat's TLS handshake reads the raw socket into {@code netInBuffer}, not
 * the application buffer that {@code unRead} fills, so that byte is put back
 * into {@code netInBuffer} here, when Tomcat binds the channel to the link.
 */
final class PrefixSecureNioChannel extends SecureNioChannel {
    private final Map<SocketChannel, Link> pending;

    PrefixSecureNioChannel(SocketBufferHandler bufHandler, NioEndpoint endpoint, Map<SocketChannel, Link> pending) {
        super(bufHandler, endpoint);
        this.pending = pending;
    }

    @Override
    public void reset(SocketChannel channel, NioEndpoint.NioSocketWrapper socketWrapper) throws IOException {
        super.reset(channel, socketWrapper);
        Link l = pending.get(channel);
        if (l != null && l.prefix != null) {
            if (l.prefix.length > netInBuffer.remaining()) {
                throw new IOException("reversed link: " + l.prefix.length + " request bytes do not fit the TLS buffer");
            }
            netInBuffer.put(l.prefix);
            // Given back here: the handler must not give it to the application too.
            l.prefix = null;
        }
    }
}
