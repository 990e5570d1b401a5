// Command api is the demo stack's application: a small HTTP service with a
// /health endpoint and a migrate mode, standing in for a real API so that
// the deploy pipeline can be exercised end to end.
//
// With RABBITMQ_URL set, serve keeps an AMQP connection to RabbitMQ open
// (redialling every second while it is down), /health answers 503 with the
// reason while it is not connected, POST /publish?queue=NAME stores the
// body as a persistent message on a durable queue, and GET /queue?name=NAME
// answers how many messages the queue holds.
//
// Switches make it fail on purpose:
//
//	FAIL_MIGRATION=1  migrate exits 1
//	MIGRATE_SLEEP=5s  migrate takes that long first
//	FAIL_HEALTH=1     /health answers 503
//	HEALTH_HOLD=PATH  /health answers 503 while the file PATH exists
//	CRASH_AFTER=5s    serve exits 1 after that long
//	ECHO_ENV=A,B      serve and migrate first print A=… and B=… on stdout and
//	                  stderr, as a careless program logs its settings
//	ECHO_TEXT=TEXT    …and TEXT, as it is (say, a line that looks like a
//	                  workflow command)
//
// It is built into a FROM scratch image, which has no shell or wget, so it
// also carries its own healthcheck probe: `api probe URL`, or the binary
// named probe (`probe URL`), as the demo's Caddy image carries it.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
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
	if cmd == "serve" || cmd == "migrate" {
		echo()
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
	var mq *broker
	if url := os.Getenv("RABBITMQ_URL"); url != "" {
		mq = &broker{url: url, down: errors.New("not connected yet")}
		go mq.run(ctx)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if hold := os.Getenv("HEALTH_HOLD"); hold != "" {
			if _, err := os.Stat(hold); err == nil {
				http.Error(w, "held unhealthy by "+hold+" (HEALTH_HOLD)", http.StatusServiceUnavailable)
				return
			}
		}
		if os.Getenv("FAIL_HEALTH") == "1" {
			http.Error(w, "unhealthy on purpose (FAIL_HEALTH)", http.StatusServiceUnavailable)
			return
		}
		if mq != nil {
			if _, err := mq.connection(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if mq != nil {
		mux.HandleFunc("POST /publish", mq.handlePublish)
		mux.HandleFunc("GET /queue", mq.handleQueue)
	}
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

// broker keeps one AMQP connection to RabbitMQ open. A wrong password is
// a connection that never comes up, so the api is unhealthy until it does.
type broker struct {
	url  string
	mu   sync.Mutex
	conn *amqp.Connection
	down error // why conn is nil
}

// run dials, waits for the connection to close, and dials again, once a
// second while dialling fails, until ctx ends.
func (b *broker) run(ctx context.Context) {
	for ctx.Err() == nil {
		conn, err := amqp.Dial(b.url)
		if err != nil {
			b.set(nil, err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		b.set(conn, nil)
		select {
		case e := <-closed:
			err = errors.New("connection closed")
			if e != nil {
				err = e
			}
			b.set(nil, err)
		case <-ctx.Done():
			_ = conn.Close()
		}
	}
}

// set records the connection or why there is none, logging only changes
// (the URL holds the password, so it is never printed).
func (b *broker) set(conn *amqp.Connection, down error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case conn != nil:
		fmt.Println("rabbitmq: connected")
	case b.conn != nil || b.down.Error() != down.Error():
		fmt.Fprintf(os.Stderr, "rabbitmq: %v; retrying every second\n", down)
	}
	b.conn, b.down = conn, down
}

func (b *broker) connection() (*amqp.Connection, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return nil, fmt.Errorf("rabbitmq: %w", b.down)
	}
	return b.conn, nil
}

// handlePublish stores the body on the durable queue named by ?queue=,
// as a persistent message the broker has confirmed.
func (b *broker) handlePublish(w http.ResponseWriter, r *http.Request) {
	queue := r.URL.Query().Get("queue")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if queue == "" || err != nil {
		http.Error(w, "POST /publish?queue=NAME with a body of at most 1 MiB", http.StatusBadRequest)
		return
	}
	err = b.withChannel(func(ch *amqp.Channel) error {
		if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
			return err
		}
		if err := ch.Confirm(false); err != nil {
			return err
		}
		msg := amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: r.Header.Get("Content-Type"), Body: body}
		confirm, err := ch.PublishWithDeferredConfirmWithContext(r.Context(), "", queue, false, false, msg)
		if err != nil {
			return err
		}
		if ok, err := confirm.WaitContext(r.Context()); err != nil || !ok {
			return cmp.Or(err, errors.New("the broker refused the message"))
		}
		return nil
	})
	reply(w, err, map[string]any{"queue": queue, "published": true})
}

// handleQueue answers how many ready messages the queue ?name= holds.
func (b *broker) handleQueue(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	var q amqp.Queue
	err := b.withChannel(func(ch *amqp.Channel) (err error) {
		q, err = ch.QueueDeclarePassive(name, true, false, false, false, nil)
		return err
	})
	reply(w, err, map[string]any{"queue": name, "messages": q.Messages})
}

// withChannel runs fn on a channel of its own: a failed AMQP method
// closes the channel it ran on.
func (b *broker) withChannel(fn func(*amqp.Channel) error) error {
	conn, err := b.connection()
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	defer ch.Close()
	return fn(ch)
}

// reply writes v as JSON, or err with a status that says whose fault it is.
func reply(w http.ResponseWriter, err error, v any) {
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.NotFound:
		http.Error(w, err.Error(), http.StatusNotFound)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
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

// echo prints what ECHO_ENV and ECHO_TEXT ask for, on both streams.
func echo() {
	var lines []string
	for _, name := range strings.Split(os.Getenv("ECHO_ENV"), ",") {
		if name != "" {
			lines = append(lines, name+"="+os.Getenv(name))
		}
	}
	if t := os.Getenv("ECHO_TEXT"); t != "" {
		lines = append(lines, t)
	}
	for _, line := range lines {
		fmt.Println(line)
		fmt.Fprintln(os.Stderr, line)
	}
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
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		// The body says why, e.g. "rabbitmq: Exception (403) …".
		return fmt.Errorf("%s answered %s: %s", args[0], resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
