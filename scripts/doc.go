// Package scripts holds the repository's shell scripts; it has no Go code
// of its own. Its test proves that check-imports.sh catches a broken
// import rule, direct and transitive, by planting violations in a copy of
// the module.
package scripts
