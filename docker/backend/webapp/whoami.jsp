<%@ page contentType="text/plain" %><%
  // Which backend answered: MPR_BACKEND_NAME, or the container's host name.
  String n = System.getenv("MPR_BACKEND_NAME");
  if (n == null || n.isEmpty()) n = System.getenv("HOSTNAME");
  response.setHeader("X-Backend", n);
%>backend=<%= n %>
<%
  // ?ms=N holds the request N ms (at most 10 s): requests in flight for the tests.
  String ms = request.getParameter("ms");
  if (ms != null) {
    long t = Math.min(10000L, Math.max(0L, Long.parseLong(ms)));
    Thread.sleep(t);
%>slept=<%= t %>
<% } %>
