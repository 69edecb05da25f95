package org.proxyreversed.tomcat;

import org.apache.coyote.http11.Http11NioProtocol;

/**
 * HTTP/1.1 over links that Tomcat dials to httpd's reversed ports:
 * {@code <Connector protocol="org.proxyreversed.tomcat.ReversedHttp11Protocol" .../>}.
 * Requests are served by Tomcat's unmodified Http11Processor.
 */
public class ReversedHttp11Protocol extends Http11NioProtocol implements ReversedProtocol {

    public ReversedHttp11Protocol() {
        super(new ReversedEndpoint());
        // A used link returns to httpd's mod_proxy pool: httpd decides when it
        // ends (its ttl, a child's exit), so Tomcat neither times it out nor
        // limits the requests on it unless the operator says so.
        setKeepAliveTimeout(-1);
        setMaxKeepAliveRequests(-1);
    }

    @Override
    protected String getNamePrefix() {
        return "http-reversed";
    }

    @Override
    public ReversedEndpoint reversed() {
        return (ReversedEndpoint) getEndpoint();
    }

    /** Unknown attributes (misspellings) fail the connector's init, naming them. */
    @Override
    public boolean setProperty(String name, String value) {
        return known(super.setProperty(name, value), name, value);
    }
}
