package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

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

// records reads every document in kv, in key order; an entry deleted while the
// keys are listed is skipped.
func records[T any](ctx context.Context, kv jetstream.KeyValue, what string, decode func([]byte) (T, error)) ([]T, error) {
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	defer lister.Stop()
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	var out []T
	for _, key := range keys {
		doc, ok, err := record(ctx, kv, key, what, decode)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, doc)
		}
	}
	return out, nil
}
