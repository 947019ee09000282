// Package wire reads and writes the PostgreSQL frontend/backend protocol at the level a
// forwarding proxy needs: the startup packet (SSLRequest, GSSENCRequest, CancelRequest,
// StartupMessage v3) and message frames (a type byte and a length). It never decodes a
// message the proxy does not need to inspect: Frame peeks the 5-byte header and the body
// can be copied straight through. It knows nothing of SELinux or pools.
//
// Sharp edges:
//   - Limits are enforced before allocating: a startup packet over MaxStartupLen and a
//     message over the reader's limit are errors, so a hostile client cannot make the
//     proxy allocate more than those bounds.
//   - A Body slice is valid only until the next read from the same Reader.
package wire
