package store_test

import (
	"os"
	"testing"

	"github.com/meshlens/meshlens/internal/chcluster"
)

// The tests run on one server and on the cluster; Main stops the cluster if
// they started it.
func TestMain(m *testing.M) { os.Exit(chcluster.Main(m)) }
