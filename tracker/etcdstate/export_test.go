package etcdstate

// Transient is transient, for the package's external tests.
var Transient = transient
