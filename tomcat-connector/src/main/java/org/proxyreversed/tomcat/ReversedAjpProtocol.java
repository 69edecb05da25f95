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
public class ReversedAjpProtocol extends AbstractAjpProtocol<NioChannel> implements ReversedProtocol {
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
