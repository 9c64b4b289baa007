import Testing

@Test func vfiouserBuilds() {}
