// Command api is the demo stack's application: a small HTTP service with a
// /health endpoint and a migrate mode, standing in for a real API so that
// the deploy pipeline can be exercised end to end. Switches make it fail
// on purpose:
//
//	FAIL_MIGRATION=1  migrate exits 1
//	MIGRATE_SLEEP=5s  migrate takes that long first
//	FAIL_HEALTH=1     /health answers 503
//	CRASH_AFTER=5s    serve exits 1 after that long
//
// It is built into a FROM scratch image, which has no shell or wget, so it
// also carries its own healthcheck probe: `api probe URL`, or the binary
// named probe (`probe URL`), as the demo's Caddy image carries it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// release is set at build time, so a deploy can tell versions apart.
var release = "dev"

func main() {
	args := os.Args[1:]
	cmd := "serve"
	switch {
	case filepath.Base(os.Args[0]) == "probe":
		cmd = "probe" // copied into other images as /usr/bin/probe
	case len(args) > 0:
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve()
	case "migrate":
		err = migrate()
	case "probe":
		err = probe(args)
	default:
		err = fmt.Errorf("unknown command %q: use serve, migrate or probe URL", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}

func version() string {
	if v := os.Getenv("RELEASE"); v != "" {
		return v
	}
	return release
}

func serve() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if d, err := time.ParseDuration(os.Getenv("CRASH_AFTER")); err == nil && d > 0 {
		go func() {
			time.Sleep(d)
			fmt.Fprintln(os.Stderr, "api: crashing on purpose (CRASH_AFTER)")
			os.Exit(1)
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if os.Getenv("FAIL_HEALTH") == "1" {
			http.Error(w, "unhealthy on purpose (FAIL_HEALTH)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"service": "api", "release": version()})
	})
	addr := ":" + envOr("PORT", "3000")
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Printf("api %s listening on %s\n", version(), addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func migrate() error {
	fmt.Printf("migrate %s: applying migrations\n", version())
	if d, err := time.ParseDuration(os.Getenv("MIGRATE_SLEEP")); err == nil && d > 0 {
		time.Sleep(d)
	}
	if os.Getenv("FAIL_MIGRATION") == "1" {
		return errors.New("migration 0002_add_orders failed on purpose (FAIL_MIGRATION)")
	}
	fmt.Println("migrate: up to date")
	return nil
}

// probe is the image's healthcheck: GET the URL, succeed on 2xx.
func probe(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: api probe URL")
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
