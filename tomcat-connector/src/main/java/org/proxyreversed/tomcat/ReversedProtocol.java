package org.proxyreversed.tomcat;

/**
 * What both reversed protocol handlers add to Tomcat's own: the attributes
 * that server.xml and mod_cluster's Java side set and read by introspection,
 * and the JMX figures. Default methods, because the two handlers extend
 * different Tomcat classes; public, so that introspection may call them.
 */
public interface ReversedProtocol {
    /** The handler's endpoint. */
    ReversedEndpoint reversed();

    /** Read by mod_cluster's Java side (introspection): it announces the node with Reversed=true. */
    default boolean getReverseConnection() {
        return true;
    }

    default void setReverseConnection(String v) {
        reversed().setReverseConnection(v);
    }

    /** httpd's address (the front end); kept as written, resolved at each dial. */
    default void setAddress(String host) {
        reversed().setReversedHost(host);
        reversed().setAddress(ReversedEndpoint.resolveOrNull(host));
    }

    /** Figures for JMX. */
    default int getIdleLinks() {
        return reversed().getIdleLinks();
    }

    default long getLinksUsed() {
        return reversed().getLinksUsed();
    }

    /**
     * The outcome of Tomcat's own setProperty: an unknown attribute (a
     * misspelling) is recorded so that the connector's init fails naming it.
     */
    default boolean known(boolean ok, String name, String value) {
        if (!ok) {
            reversed().unknownAttribute(this, name, value);
        }
        return ok;
    }
}
