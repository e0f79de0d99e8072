package queue

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// put writes doc as JSON under key in kv (what names it in errors).
func put(ctx context.Context, kv jetstream.KeyValue, key, what string, doc any) error {
	data, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	if _, err := kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("write %s %s: %w", what, key, err)
	}
	return nil
}

// CompareAndSet writes data under key in kv if the entry is still at revision rev
// (0: there is none yet). won is false, with no error, when another writer changed
// it first: the caller reads it again and decides again.
func CompareAndSet(ctx context.Context, kv jetstream.KeyValue, key string, data []byte, rev uint64) (won bool, err error) {
	if rev == 0 {
		_, err = kv.Create(ctx, key, data)
	} else {
		_, err = kv.Update(ctx, key, data, rev)
	}
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists),
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence:
		return false, nil
	}
	return false, err
}

// record reads the document stored under key in kv (what names it in errors); ok
// is false when there is none.
func record[T any](ctx context.Context, kv jetstream.KeyValue, key, what string, decode func([]byte) (T, error)) (doc T, ok bool, err error) {
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return doc, false, nil
	}
	if err != nil {
		return doc, false, fmt.Errorf("read %s %s: %w", what, key, err)
	}
	if doc, err = decode(entry.Value()); err != nil {
		return doc, false, fmt.Errorf("%s %s: %w", what, key, err)
	}
	return doc, true, nil
}

// records returns every document in kv, sorted by key. It reads the bucket's
// stream state first and lists the documents again only when the stream has
// changed since the last listing, so a page that shows a catalog of a thousand
// families on every view pays one request, not a thousand decodings. The slice is
// the caller's.
func records[T any](ctx context.Context, q *Queue, kv jetstream.KeyValue, what string, decode func([]byte) (T, error)) ([]T, error) {
	stream, err := q.js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	state := stream.CachedInfo().State
	mark := listMark{first: state.FirstSeq, last: state.LastSeq, msgs: state.Msgs}
	if docs, ok := q.lists.get(kv.Bucket(), mark).([]T); ok {
		return slices.Clone(docs), nil
	}
	docs, err := listRecords(ctx, kv, what, decode)
	if err != nil {
		return nil, err
	}
	q.lists.put(kv.Bucket(), mark, docs)
	return slices.Clone(docs), nil
}

// recordsBy is records sorted by two names each document carries (job, then
// cloud; family, then cloud) rather than by key, which spells them sanitised.
func recordsBy[T any](ctx context.Context, q *Queue, kv jetstream.KeyValue, what string, decode func([]byte) (T, error), names func(T) (string, string)) ([]T, error) {
	out, err := records(ctx, q, kv, what, decode)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b T) int {
		a1, a2 := names(a)
		b1, b2 := names(b)
		return cmp.Or(strings.Compare(a1, b1), strings.Compare(a2, b2))
	})
	return out, nil
}

// listRecords reads every document in kv, sorted by key: the latest value of each
// key, delivered by one watcher rather than a request per key.
func listRecords[T any](ctx context.Context, kv jetstream.KeyValue, what string, decode func([]byte) (T, error)) ([]T, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	defer w.Stop()
	type keyed struct {
		key string
		doc T
	}
	var list []keyed
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s: %w", kv.Bucket(), context.Cause(ctx))
		case entry, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s: the watcher stopped before the last key", kv.Bucket())
			}
			if entry == nil { // every key's latest value has been delivered
				slices.SortFunc(list, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
				out := make([]T, len(list))
				for i, k := range list {
					out[i] = k.doc
				}
				return out, nil
			}
			doc, err := decode(entry.Value())
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", what, entry.Key(), err)
			}
			list = append(list, keyed{entry.Key(), doc})
		}
	}
}

// listMark is a bucket stream's state: any write, delete, purge or expiry
// changes it.
type listMark struct{ first, last, msgs uint64 }

// listCache keeps, per bucket, the documents of its last listing and the stream
// state they were read at.
type listCache struct {
	mu    sync.Mutex
	lists map[string]cachedList
}

type cachedList struct {
	mark listMark
	docs any
}

// get returns the bucket's documents listed at mark, or nil.
func (c *listCache) get(bucket string, mark listMark) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.lists[bucket]; ok && l.mark == mark {
		return l.docs
	}
	return nil
}

func (c *listCache) put(bucket string, mark listMark, docs any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lists == nil {
		c.lists = map[string]cachedList{}
	}
	c.lists[bucket] = cachedList{mark, docs}
}
