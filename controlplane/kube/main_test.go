package kube

import (
	"os"
	"testing"

	"github.com/meshlens/meshlens/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
