"""keepalived.conf for `shoal import`: `syntax` reads it (includes,
conditionals, parameters) into statements, `convert` turns the common
subset into an lvs.cf model and says what it did not carry over."""
