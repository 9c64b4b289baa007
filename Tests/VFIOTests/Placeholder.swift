import Testing

@Test func vfioBuilds() {}
