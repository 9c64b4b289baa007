import Testing

@Test func cxlemulatorBuilds() {}
