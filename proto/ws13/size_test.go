package ws13

import "unsafe"

func unsafeSizeofDecoder() uintptr { return unsafe.Sizeof(Decoder{}) }
