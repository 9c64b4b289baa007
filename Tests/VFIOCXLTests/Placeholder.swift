import Testing

@Test func vfiocxlBuilds() {}
