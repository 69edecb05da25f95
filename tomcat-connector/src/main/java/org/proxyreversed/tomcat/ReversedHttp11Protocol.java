package org.proxyreversed.tomcat;

import org.apache.coyote.http11.Http11NioProtocol;

/**
 * HTTP/1.1 over links that Tomcat dials to httpd's reversed ports:
 * {@code <Connector protocol="org.proxyreversed.tomcat.ReversedHttp11Protocol" .../>}.
 * Requests are served by Tomcat's unmodified Http11Processor.
 */
public class ReversedHttp11Protocol extends Http11NioProtocol {

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

    ReversedEndpoint reversed() {
        return (ReversedEndpoint) getEndpoint();
    }

    /** Read by mod_cluster's Java side (introspection): it announces the node with Reversed=true. */
    public boolean getReverseConnection() {
        return true;
    }

    public void setReverseConnection(String v) {
        reversed().setReverseConnection(v);
    }

    /** httpd's address (the front end); kept as written, resolved at each dial. */
    public void setAddress(String host) {
        reversed().setReversedHost(host);
        getEndpoint().setAddress(ReversedEndpoint.resolveOrNull(host));
    }

    public int getIdleLinks() {
        return reversed().getIdleLinks();
    }

    public long getLinksUsed() {
        return reversed().getLinksUsed();
    }

    /** Unknown attributes (misspellings) fail the connector's init, naming them. */
    @Override
    public boolean setProperty(String name, String value) {
        boolean ok = super.setProperty(name, value);
        if (!ok) {
            reversed().unknownAttribute(this, name, value);
        }
        return ok;
    }
}
