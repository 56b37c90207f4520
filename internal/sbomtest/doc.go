// Package sbomtest checks what `make sbom` writes: CycloneDX 1.6 JSON
// SBOMs of bin/meshlens (its Go modules) and of the UI's npm packages,
// valid against CycloneDX's own JSON schemas (testdata/schema, as
// CycloneDX publishes them) and naming every module linked into the binary
// and every production npm package with the version actually used.
// `make test-sbom` runs `make sbom` and then this package's test.
package sbomtest
