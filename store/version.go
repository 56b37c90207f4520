package store

import (
	"fmt"
	"sort"
	"strings"
)

// Version is a ClickHouse server version.
type Version struct{ Major, Minor, Patch uint64 }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v >= major.minor.
func (v Version) AtLeast(major, minor uint64) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// Features are the optional server capabilities meshlens uses when present.
// The baseline (all false) is what ClickHouse 18.16 supports.
type Features struct {
	LowCardinality bool // LowCardinality(String) columns (19.3)
	Codecs         bool // column CODEC(...) (19.1)
}

// FeaturesOf returns what a server of version v supports.
func FeaturesOf(v Version) Features {
	return Features{
		LowCardinality: v.AtLeast(19, 3),
		Codecs:         v.AtLeast(19, 1),
	}
}

func (f Features) String() string {
	var on []string
	for name, ok := range map[string]bool{"LowCardinality": f.LowCardinality, "codecs": f.Codecs} {
		if ok {
			on = append(on, name)
		}
	}
	if len(on) == 0 {
		return "baseline (18.16)"
	}
	sort.Strings(on)
	return strings.Join(on, ",")
}
