package deployer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/semalink/deploy-action/checks/project"
)

// TestMigrateServiceLikeAnOption: a migration service named --help would
// make compose run print its help and exit 0, passing the gate unrun.
func TestMigrateServiceLikeAnOption(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte("name: app\nservices:\n  --help:\n    image: app\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := project.Load(t.Context(), project.Options{Files: []string{file}, Env: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	err = (&Plan{Project: p, Local: true, Migrate: "--help"}).Validate()
	if err == nil || !strings.Contains(err.Error(), "takes for an option") {
		t.Errorf("Validate = %v, want the service name refused", err)
	}
}
