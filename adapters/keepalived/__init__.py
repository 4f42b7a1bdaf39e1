"""keepalived.conf for `shoal import` (docs/IMPORT-KEEPALIVED.md):
`syntax` reads it (includes, conditionals, parameters) into statements,
`convert` (VRRP and the whole) and `servers` (LVS) turn the common subset
into an lvs.cf model with a note for everything not carried over,
`values` holds the notes and reads values as lvs.cf takes them."""
