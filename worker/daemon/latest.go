package daemon

import "sync"

// latest writes values from one goroutine, so a slow NATS never blocks who sets
// them; a value set while one is being written replaces any not yet written, so
// only the latest is.
type latest[T any] struct {
	mu    sync.Mutex
	v     T
	kick  chan struct{}
	done  chan struct{}
	once  sync.Once
	write func(T)
}

func newLatest[T any](write func(T)) *latest[T] {
	kick := make(chan struct{}, 1)
	l := &latest[T]{kick: kick, done: make(chan struct{}), write: write}
	go func() {
		defer close(l.done)
		for range kick {
			l.mu.Lock()
			v := l.v
			l.mu.Unlock()
			l.write(v)
		}
	}()
	return l
}

// set records v without blocking; after close it is ignored.
func (l *latest[T]) set(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kick == nil {
		return
	}
	l.v = v
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// close stops the writer after its last write; idempotent.
func (l *latest[T]) close() {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.kick)
		l.kick = nil
		l.mu.Unlock()
		<-l.done
	})
}
