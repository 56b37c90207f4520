package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshlens/meshlens/store"
	"github.com/meshlens/meshlens/store/storetest"
)

// The shared config log as two replicas see it: what one appends, the other
// reads (on a cluster through the Distributed table, whichever shard the
// key went to); a read since a revision leaves older changes out; a
// tombstone reads back as deleted.
func TestConfigLogWrittenByOneReplicaIsReadByAnother(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			a := b.Open(t)
			other := storetest.Reopen(t, a)
			ctx := context.Background()
			rows := []store.ConfigRow{
				{Key: "VirtualService/shop/reviews", Revision: 100, Replica: "10.0.0.1:8080", Object: `{"kind":"VirtualService"}`},
				{Key: "DestinationRule/shop/reviews", Revision: 100, Replica: "10.0.0.1:8080", Object: `{"kind":"DestinationRule"}`},
			}
			if err := a.AppendConfig(ctx, rows); err != nil {
				t.Fatal(err)
			}
			if err := other.AppendConfig(ctx, []store.ConfigRow{{Key: "VirtualService/shop/reviews", Revision: 200, Replica: "10.0.0.2:8080", Deleted: true}}); err != nil {
				t.Fatal(err)
			}
			want := map[uint64]int{100: 2, 200: 1}
			var got []store.ConfigRow
			deadline := time.Now().Add(30 * time.Second) // a Distributed insert reaches its shard in the background
			for {
				var err error
				if got, err = a.ConfigSince(ctx, 0); err != nil {
					t.Fatal(err)
				}
				if len(got) == 3 || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			counts := map[uint64]int{}
			for _, r := range got {
				counts[r.Revision]++
				if r.Revision == 200 && (!r.Deleted || r.Replica != "10.0.0.2:8080" || r.Key != "VirtualService/shop/reviews") {
					t.Errorf("the delete reads back as %+v", r)
				}
				if r.Revision == 100 && (r.Deleted || r.Object == "") {
					t.Errorf("an apply reads back as %+v", r)
				}
			}
			if counts[100] != want[100] || counts[200] != want[200] {
				t.Fatalf("read %+v, want two rows of revision 100 and one of 200", got)
			}
			since, err := other.ConfigSince(ctx, 150)
			if err != nil {
				t.Fatal(err)
			}
			if len(since) != 1 || since[0].Revision != 200 {
				t.Fatalf("since 150: %+v, want the delete alone", since)
			}
		})
	}
}

// The rollouts' state saved by the acting replica reads back, the newest
// save of each rollout alone, through another replica's store.
func TestRolloutStateSavedByOneReplicaIsReadByAnother(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			a := b.Open(t)
			other := storetest.Reopen(t, a)
			ctx := context.Background()
			for _, r := range []store.RolloutStateRow{
				{Key: "shop/reviews", Updated: 10, Replica: "10.0.0.1:8080", State: `{"step":0}`},
				{Key: "shop/reviews", Updated: 30, Replica: "10.0.0.1:8080", State: `{"step":2}`},
				{Key: "shop/reviews", Updated: 20, Replica: "10.0.0.1:8080", State: `{"step":1}`},
				{Key: "shop/ratings", Updated: 5, Replica: "10.0.0.1:8080", State: `{"step":0}`},
			} {
				if err := a.SaveRolloutState(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			var got []store.RolloutStateRow
			deadline := time.Now().Add(30 * time.Second) // on a cluster, replication to the replica read is in the background
			for {
				var err error
				if got, err = other.RolloutStates(ctx); err != nil {
					t.Fatal(err)
				}
				if (len(got) == 2 && got[1].Updated == 30) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if len(got) != 2 || got[0].Key != "shop/ratings" || got[1].Key != "shop/reviews" || got[1].State != `{"step":2}` || got[1].Updated != 30 {
				t.Fatalf("read %+v, want ratings at step 0 and reviews' newest save (step 2)", got)
			}
		})
	}
}
