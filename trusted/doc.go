// Package trusted owns sepgadm's tagging mechanism: the call that switches a server
// session's SELinux label to a client's context through the trusted procedure, the
// credential that guards it, the labels the installed objects must carry, and the
// SELinux policy module (policy/) that makes the procedure the only way to switch.
//
// How a switch works: sepgadm.tag(token, context) is an ordinary function that calls
// sepgadm.tag_switch, labelled sepgadm_switch_exec_t. Executing that label moves the
// caller into sepgadm_switch_t, which alone may read the credential digest (table
// labelled sepgadm_secret_t) and dyntransition to the proxy's and the tenants'
// domains. tag then returns sepgsql_getcon(): after the trusted procedure returns, that
// is the label the session really has.
//
// Sharp edges:
//   - Switch in an autocommit statement of its own: sepgsql undoes a label set inside a
//     transaction that rolls back.
//   - The token travels only as a bind parameter (extended protocol), never in SQL text,
//     so it cannot reach the server log through log_statement or an error's STATEMENT.
//   - A NULL context returns the session to its peer label: the proxy's own domain.
//   - Without SELinux (or without sepgsql) tag fails with 55000; a wrong token with
//     28000; sepgsql's own 42602 (invalid label) and 42501 (denied) pass through.
package trusted
