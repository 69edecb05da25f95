package org.proxyreversed.tomcat;

import org.apache.coyote.ajp.AbstractAjpProtocol;
import org.apache.juli.logging.Log;
import org.apache.juli.logging.LogFactory;
import org.apache.tomcat.util.net.NioChannel;

/**
 * AJP/1.3 over links that Tomcat dials to httpd's reversed ports:
 * {@code <Connector protocol="org.proxyreversed.tomcat.ReversedAjpProtocol" .../>}.
 * Requests are served by Tomcat's unmodified AjpProcessor.
 */
public class ReversedAjpProtocol extends AbstractAjpProtocol<NioChannel> {
    private static final Log log = LogFactory.getLog(ReversedAjpProtocol.class);

    public ReversedAjpProtocol() {
        super(new ReversedEndpoint());
        // AbstractAjpProtocol sets loopback as the bind address; here the
        // address names httpd (the front end), and nothing is bound.
        getEndpoint().setAddress(null);
    }

    @Override
    protected Log getLog() {
        return log;
    }

    @Override
    protected String getNamePrefix() {
        return "ajp-reversed";
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

    /** Figures for JMX. */
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
