package webtest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// failure records a failure instead of failing the test: Fatalf hands on the
// message and ends the goroutine, as testing's does.
type failure struct {
	testing.TB
	msg chan string
}

func (f *failure) Fatalf(format string, args ...any) {
	f.msg <- fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *failure) Fatal(args ...any) {
	f.msg <- fmt.Sprint(args...)
	runtime.Goexit()
}

// A wait that fails on a page holding an event stream open fails naming what it
// waited for, in bounded time, and leaves the page first: the stream closes, so
// the server that serves it can close.
func TestFailedWaitLeavesAPageWithAnOpenEventStream(t *testing.T) {
	ctx := Browser(t)
	opened, closed := make(chan struct{}, 1), make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `<!doctype html><title>stream</title><script>new EventSource("/events")</script>`)
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		opened <- struct{}{}
		<-r.Context().Done()
		closed <- struct{}{}
	})
	hs := httptest.NewServer(mux)
	// Before the browser goes; a stream left open must not hold the close.
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close() })

	Do(t, ctx, 20*time.Second, chromedp.Navigate(hs.URL))
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the page's event stream did not open")
	}
	f := &failure{TB: t, msg: make(chan string, 1)}
	go WaitJS(f, ctx, time.Second, "a condition that never holds", "false")
	select {
	case msg := <-f.msg:
		if want := "timed out after 1s waiting for a condition that never holds"; !strings.Contains(msg, want) {
			t.Errorf("the failed wait says %q, want %q", msg, want)
		}
	case <-time.After(time.Second + evalTimeout + leaveTimeout + 5*time.Second):
		t.Fatal("the failed wait did not end")
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("the failed wait left the page's event stream open")
	}
}
