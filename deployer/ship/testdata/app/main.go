// Command app is the program inside the images that ship's tests build: a
// static binary whose release, set at build time, makes each build a
// different layer, as a code change does.
package main

import (
	"fmt"
	"os"
)

var release = "dev"

func main() {
	fmt.Fprintln(os.Stdout, "app", release)
}
