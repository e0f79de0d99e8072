package worker

import (
	"sync"

	"github.com/imagevet/imagevet/cloudinit"
)

// keyPool keeps a few fresh job key sets ready. Generating one (two RSA keys among
// them, for guests whose SSH server predates ed25519) takes about 0.3 s, which would
// otherwise sit on every job's path to boot. Each set is handed out once.
type keyPool struct {
	ready    chan *cloudinit.Keys
	generate func() (*cloudinit.Keys, error)
	stop     chan struct{}
	once     sync.Once
	done     chan struct{}
}

func newKeyPool(size int, generate func() (*cloudinit.Keys, error)) *keyPool {
	p := &keyPool{ready: make(chan *cloudinit.Keys, size), generate: generate, stop: make(chan struct{}), done: make(chan struct{})}
	go p.fill()
	return p
}

func (p *keyPool) fill() {
	defer close(p.done)
	for {
		k, err := p.generate()
		if err != nil {
			// get generates inline and reports the error to the job.
			return
		}
		select {
		case p.ready <- k:
		case <-p.stop:
			return
		}
	}
}

// get returns a ready key set, or generates one when none is ready.
func (p *keyPool) get() (*cloudinit.Keys, error) {
	select {
	case k := <-p.ready:
		return k, nil
	default:
		return p.generate()
	}
}

// close stops the background generator and waits for it.
func (p *keyPool) close() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}
