"""Pure model code: no HTTP, no storage. Each model is a package testable on its own."""
