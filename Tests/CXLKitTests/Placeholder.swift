import Testing

@Test func cxlkitBuilds() {}
