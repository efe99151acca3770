package subscribers

import (
	"context"
	"slices"
)

// UpsertBatch registers devices through the upsert script, a thousand a
// call, to set up large audiences quickly.
func (r *Registry) UpsertBatch(ctx context.Context, ds []Device) error {
	now := r.now()
	for chunk := range slices.Chunk(ds, 1000) {
		norm := make([]Device, len(chunk))
		for i, d := range chunk {
			var err error
			if norm[i], err = d.normalize(); err != nil {
				return err
			}
		}
		keys, args := r.upsertArgs(now, norm...)
		if err := r.scripts.upsert.Run(ctx, r.rdb, keys, args...).Err(); err != nil {
			return err
		}
	}
	return nil
}
