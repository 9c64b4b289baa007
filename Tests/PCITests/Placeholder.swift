import Testing

@Test func pciBuilds() {}
