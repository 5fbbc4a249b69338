// Copyright 2026 The edgeportal authors.
// SPDX-License-Identifier: Apache-2.0

package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// shape measures a decoded value: its nesting depth and its largest
// array and map.
func shape(v any) (depth, maxArray, maxMap int) {
	switch v := v.(type) {
	case []any:
		maxArray = len(v)
		for _, e := range v {
			d, a, m := shape(e)
			depth, maxArray, maxMap = max(depth, d), max(maxArray, a), max(maxMap, m)
		}
		return depth + 1, maxArray, maxMap
	case map[any]any:
		maxMap = len(v)
		for k, e := range v {
			dk, ak, mk := shape(k)
			d, a, m := shape(e)
			depth, maxArray, maxMap = max(depth, d, dk), max(maxArray, a, ak), max(maxMap, m, mk)
		}
		return depth + 1, maxArray, maxMap
	}
	return 0, 0, 0
}

// FuzzUnmarshal checks the CBOR modes everything on the wire goes
// through: what the decoder accepts stays within the named limits,
// re-encodes deterministically (the encoding of a decoded value is a
// fixed point, so canonical input comes back byte for byte), and the
// strict mode accepts nothing the lenient one refuses.
//
// Like encoding/json, Unmarshal may leave part of v filled when it fails
// (a duplicate key is found after the first copy was stored), so every
// decoder built on it returns a fresh zero value on error; their own fuzz
// targets check that.
func FuzzUnmarshal(f *testing.F) {
	for _, v := range []any{
		sample{A: 1, B: "x", M: map[string]string{"b": "2", "a": "1"}},
		map[int]any{1: []any{1, "a", []byte{2}}, 2: map[string]any{"k": true}, 9: nil},
		[]any{1.5, -3, uint64(1) << 63},
	} {
		b, err := Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(bytes.Repeat([]byte{0x81}, maxNestedLevels+1)) // one level too deep
	f.Add([]byte{0x99, 0x10, 0x01})                      // array of 4097
	f.Add([]byte{0xa2, 0x01, 0x01, 0x01, 0x02})          // duplicate key
	f.Add([]byte{0x9f, 0x01, 0xff})                      // indefinite length
	f.Add([]byte{0xc1, 0x01})                            // a tag
	f.Add([]byte{0xa1, 0x18, 0x01, 0x05})                // non-minimal key
	f.Add([]byte{0x62, 0xc3, 0x28})                      // invalid UTF-8
	f.Fuzz(func(t *testing.T, b []byte) {
		var v any
		if err := Unmarshal(b, &v); err != nil {
			var s sample
			if UnmarshalStrict(b, &s) == nil {
				t.Fatalf("strict decode accepted %x, which the lenient one refuses", b)
			}
			return
		}
		if d, a, m := shape(v); d > maxNestedLevels || a > maxArrayElements || m > maxMapPairs {
			t.Fatalf("decoded value of depth %d, array %d, map %d passed the limits", d, a, m)
		}
		e1, err := Marshal(v)
		if err != nil {
			t.Fatalf("accepted %x does not re-encode: %v", b, err)
		}
		var v2 any
		if err := Unmarshal(e1, &v2); err != nil {
			t.Fatalf("re-encoding %x of accepted %x does not decode: %v", e1, b, err)
		}
		e2, err := Marshal(v2)
		if err != nil || !bytes.Equal(e1, e2) {
			t.Fatalf("encoding is not a fixed point: %x then %x (%v)", e1, e2, err)
		}
		var s, ls sample
		if err := UnmarshalStrict(b, &s); err == nil {
			if err := Unmarshal(b, &ls); err != nil || !reflect.DeepEqual(s, ls) {
				t.Fatalf("strict decode gave %+v, lenient %+v (%v)", s, ls, err)
			}
		}
	})
}
