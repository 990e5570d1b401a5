package health

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// logs returns a container's last log lines, stdout and stderr together;
// none if they cannot be read (a removed container has none).
func (wt *waiter) logs(ctx context.Context, c *ctr) []string {
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc, err := wt.w.eng.ContainerLogs(ctx, c.id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(logLines)})
	if err != nil {
		return nil
	}
	defer rc.Close()
	var buf bytes.Buffer
	r := io.LimitReader(rc, 1<<20)
	if c.tty {
		_, err = io.Copy(&buf, r)
	} else {
		// Without a TTY the stream is multiplexed; one buffer keeps the
		// two streams in the order the lines came.
		_, err = stdcopy.StdCopy(&buf, &buf, r)
	}
	if err != nil && buf.Len() == 0 {
		return nil
	}
	var lines []string
	for line := range strings.Lines(buf.String()) {
		lines = append(lines, strings.TrimRight(line, "\r\n"))
	}
	if len(lines) > logLines {
		lines = lines[len(lines)-logLines:]
	}
	return lines
}
