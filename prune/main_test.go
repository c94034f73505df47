package prune

import "os"

// testOutput receives the figures tests print for the README tables.
var testOutput = os.Stderr
