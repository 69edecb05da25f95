package org.proxyreversed.tomcat;

import org.apache.juli.logging.Log;

/** Where the connector's decisions are reported (juli in Tomcat, a list in tests). */
public interface Reporter {
    void error(String msg);

    void warn(String msg);

    void info(String msg);

    void debug(String msg);

    static Reporter of(Log log, String prefix) {
        return new ReversedLog(log, prefix);
    }
}

/** juli with a "[node X] " prefix (juli names this class as the source of each line). */
final class ReversedLog implements Reporter {
    private final Log log;
    private final String prefix;

    ReversedLog(Log log, String prefix) {
        this.log = log;
        this.prefix = prefix;
    }

    @Override
    public void error(String msg) {
        log.error(prefix + msg);
    }

    @Override
    public void warn(String msg) {
        log.warn(prefix + msg);
    }

    @Override
    public void info(String msg) {
        log.info(prefix + msg);
    }

    @Override
    public void debug(String msg) {
        if (log.isDebugEnabled()) {
            log.debug(prefix + msg);
        }
    }
}
